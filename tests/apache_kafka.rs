//! The local Apache Kafka cluster itself: it starts from the Maven Central jars, replicates,
//! elects new leaders when a broker is killed or paused, takes restarted brokers back with
//! their data, and answers what the mock cannot (ListOffsets by timestamp).

mod common;

use std::time::Duration;

use fds_testkit::localstack::{ApacheKafka, KafkaOptions};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn produce(kafka: &ApacheKafka, topic: &str, count: usize, timestamp: impl Fn(usize) -> i64) {
    let producer: BaseProducer = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    for i in 0..count {
        let key = format!("k{i}");
        let value = format!("v{i}");
        producer
            .send(
                BaseRecord::to(topic)
                    .key(&key)
                    .payload(&value)
                    .partition(0)
                    .timestamp(timestamp(i)),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn read_all(kafka: &ApacheKafka, topic: &str) -> Vec<String> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", common::random_name("reader"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let mut values = Vec::new();
    let deadline = std::time::Instant::now() + common::WAIT;
    while (values.len() as i64) < high {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {high}",
            values.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                values.push(String::from_utf8_lossy(message.payload().unwrap()).into_owned())
            }
            // librdkafka reports a broker that is down (the test killed it) as an error event;
            // the read goes on from the others, bounded by the deadline above.
            Some(Err(error)) => tracing::debug!(%error, "reading"),
            None => {}
        }
    }
    values
}

#[test]
fn three_brokers_replicate_and_survive_kill_pause_and_restart() {
    common::init_tracing();
    let kafka = ApacheKafka::start(KafkaOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let metadata = kafka.metadata().unwrap();
    assert_eq!(metadata.brokers().len(), 3);

    let topic = common::random_name("replicated");
    kafka.create_topic(&topic, 2).unwrap();
    let metadata = kafka.metadata().unwrap();
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap();
    for p in t.partitions() {
        assert_eq!(p.replicas().len(), 3, "replication factor 3");
    }

    produce(&kafka, &topic, 100, |_| 0);
    let leader = kafka.leader_of(&topic, 0).unwrap().expect("a leader");

    // kill -9 the leader: another broker takes over, nothing acknowledged is lost.
    kafka.kill(leader).unwrap();
    let new_leader = common::wait_for("a new leader", common::WAIT, || {
        kafka
            .leader_of(&topic, 0)
            .ok()
            .flatten()
            .filter(|l| *l != leader)
    });
    assert_ne!(new_leader, leader);
    produce(&kafka, &topic, 50, |_| 0);
    assert_eq!(read_all(&kafka, &topic).len(), 150);

    // Restarted with its data, it rejoins and catches up.
    kafka.restart(leader).unwrap();
    kafka.wait_healthy(Duration::from_secs(60)).unwrap();

    // SIGSTOP past broker.session.timeout.ms: fenced, its leaderships move; SIGCONT: back.
    let paused = kafka.leader_of(&topic, 1).unwrap().expect("a leader");
    kafka.pause(paused).unwrap();
    common::wait_for(
        "leadership to leave the paused broker",
        common::WAIT,
        || {
            kafka
                .leader_of(&topic, 1)
                .ok()
                .flatten()
                .filter(|l| *l != paused)
        },
    );
    kafka.resume(paused).unwrap();
    kafka.wait_healthy(Duration::from_secs(60)).unwrap();
    let log = kafka.log_tail(paused, 5).unwrap();
    assert!(log.contains("server.log"), "{log}");
}

#[test]
fn a_single_broker_answers_offsets_for_times() {
    common::init_tracing();
    let kafka = ApacheKafka::start(KafkaOptions::single()).unwrap_or_else(|e| panic!("{e}"));
    let topic = common::random_name("timed");
    kafka.create_topic(&topic, 1).unwrap();
    let base = 1_700_000_000_000i64;
    produce(&kafka, &topic, 10, |i| base + i as i64 * 1000);
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", common::random_name("times"))
        .create()
        .unwrap();
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(&topic, 0, Offset::Offset(base + 4_500))
        .unwrap();
    let answer = consumer
        .offsets_for_times(query, Duration::from_secs(10))
        .unwrap();
    let offset = answer.find_partition(&topic, 0).unwrap().offset();
    assert_eq!(
        offset,
        Offset::Offset(5),
        "the first record at or after the time"
    );
}
