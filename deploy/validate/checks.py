#!/usr/bin/env python3
"""Checks of the deployment files that need more than a schema (run by scripts/validate-deploy.sh
with its tool virtualenv's Python, which has PyYAML).

  checks.py chart RENDERED.yaml WORKER_BIN [EXTERNAL_SECRET ...]
      Cross-references of one `helm template` output: selectors match the pods they are meant
      for, every referenced ConfigMap/Secret is rendered (or is one of the named external
      Secrets), *_FILE variables point into mounted volumes, the security context holds, the
      probes hit /healthz and /readyz, the PrometheusRule and dashboard equal files/, and the
      worker's effective config (ConfigMap + env) passes `fds-worker check-config`.
  checks.py dockerfile Dockerfile .dockerignore
      Every COPY source (not --from a stage) exists and is let through by .dockerignore (an
      allow-list: `*`, then `!path` entries).
  checks.py compose CONFIG.json WORKER_BIN
      `docker-compose config --format json` output: bind mounts exist, published ports are
      loopback-only, one-shot services gate the worker, and the worker's and generator's config
      (mounted file + environment) passes `fds-worker check-config`.

Exit status 1 with every problem listed; 0 otherwise.
"""

import json
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FILES = os.path.join(ROOT, "helm", "fds-worker", "files")
problems = []


def problem(msg):
    problems.append(msg)


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_templates(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield d, d["spec"]["template"]


def check_config(worker_bin, config_path, env, what):
    """Runs `fds-worker --config F check-config --print` with only `env` (plus PATH)."""
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    run_env.update(env)
    out = subprocess.run(
        [worker_bin, "--config", config_path, "check-config", "--print"],
        env=run_env, capture_output=True, text=True, timeout=60,
    )
    if out.returncode != 0:
        problem(f"{what}: fds-worker check-config failed ({out.returncode}): "
                f"{out.stderr.strip() or out.stdout.strip()}")
        return None
    return out.stdout


def printed_config(text):
    """The TOML printed by check-config --print (its last line is the 'config OK' message)."""
    import tomllib
    body = "\n".join(l for l in text.splitlines() if not l.startswith("config OK"))
    return tomllib.loads(body)


def check_chart(rendered, worker_bin, external_secrets):
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    tag = os.path.basename(rendered)

    # Selectors.
    workloads = list(pod_templates(docs))
    for d, tpl in workloads:
        if d["kind"] != "Job":
            sel = d["spec"]["selector"]["matchLabels"]
            if not matches(sel, tpl["metadata"]["labels"]):
                problem(f"{tag}: {d['kind']} {d['metadata']['name']}: selector does not match its pods")
    pod_labels = [tpl["metadata"]["labels"] for _, tpl in workloads]
    for svc in by_kind.get("Service", []):
        if not any(matches(svc["spec"]["selector"], l) for l in pod_labels):
            problem(f"{tag}: Service {svc['metadata']['name']} selects no pods")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not any(matches(pdb["spec"]["selector"]["matchLabels"], l) for l in pod_labels):
            problem(f"{tag}: PodDisruptionBudget {pdb['metadata']['name']} selects no pods")
    for np in by_kind.get("NetworkPolicy", []):
        if not any(matches(np["spec"]["podSelector"]["matchLabels"], l) for l in pod_labels):
            problem(f"{tag}: NetworkPolicy {np['metadata']['name']} selects no pods")
        for rule in np["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                ps = peer.get("podSelector", {}).get("matchLabels")
                if ps and not any(matches(ps, l) for l in pod_labels):
                    problem(f"{tag}: NetworkPolicy {np['metadata']['name']}: peer {ps} matches no pods")
    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"]["selector"]["matchLabels"]
        svcs = [s for s in by_kind.get("Service", []) if matches(sel, s["metadata"]["labels"])]
        if not svcs:
            problem(f"{tag}: ServiceMonitor {sm['metadata']['name']} selects no Service")
        for ep in sm["spec"]["endpoints"]:
            if not any(ep["port"] in [p["name"] for p in s["spec"]["ports"]] for s in svcs):
                problem(f"{tag}: ServiceMonitor endpoint port {ep['port']} is not a Service port name")

    # Pods: references, security, probes, secret files.
    for d, tpl in workloads:
        spec = tpl["spec"]
        wname = f"{d['kind']} {d['metadata']['name']}"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in names:
                problem(f"{tag}: {wname}: ConfigMap {v['configMap']['name']} is not rendered")
            if "secret" in v:
                s = v["secret"]["secretName"]
                if ("Secret", s) not in names and s not in external_secrets:
                    problem(f"{tag}: {wname}: Secret {s} is neither rendered nor an expected external Secret")
        claims = {c["metadata"]["name"] for c in d["spec"].get("volumeClaimTemplates", [])}
        psc = spec.get("securityContext", {})
        if spec.get("automountServiceAccountToken") is not False:
            problem(f"{tag}: {wname}: automountServiceAccountToken should be false")
        for c in spec.get("initContainers", []) + spec["containers"]:
            cname = f"{wname}/{c['name']}"
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                problem(f"{tag}: {cname}: not runAsNonRoot")
            if sc.get("readOnlyRootFilesystem") is not True:
                problem(f"{tag}: {cname}: root filesystem is not read-only")
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(f"{tag}: {cname}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problem(f"{tag}: {cname}: capabilities not dropped")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits", {}).get("memory"):
                problem(f"{tag}: {cname}: resource requests and a memory limit are required")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            for m in mounts.values():
                if m not in volumes and m not in claims:
                    problem(f"{tag}: {cname}: volumeMount {m} has no volume")
            for e in c.get("env", []):
                if e["name"].endswith("_FILE") or e["name"].endswith("_LOCATION"):
                    path = e.get("value", "")
                    if not any(path.startswith(mp.rstrip("/") + "/") for mp in mounts):
                        problem(f"{tag}: {cname}: {e['name']}={path} is not inside a mounted volume")
            if "secretKeyRef" in json.dumps(c.get("env", [])):
                problem(f"{tag}: {cname}: secrets must be mounted files, not environment variables")

    # The worker.
    worker = next((d for d in by_kind.get("Deployment", [])), None)
    if worker is None:
        problem(f"{tag}: no worker Deployment")
        return
    c = worker["spec"]["template"]["spec"]["containers"][0]
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = c.get(probe, {}).get("httpGet", {})
        if got.get("path") != path or got.get("port") not in ("metrics", port):
            problem(f"{tag}: worker {probe} should GET {path} on the metrics port, got {got}")
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    if env.get("FDS_METRICS__LISTEN") != f"0.0.0.0:{port}":
        problem(f"{tag}: FDS_METRICS__LISTEN {env.get('FDS_METRICS__LISTEN')} is not the metrics port {port}")
    grace = worker["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)

    # The worker's effective configuration, as the pod would load it.
    cm_name = next(v["configMap"]["name"] for v in worker["spec"]["template"]["spec"]["volumes"]
                   if v["name"] == "config")
    cm = next(d for d in by_kind["ConfigMap"] if d["metadata"]["name"] == cm_name)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "fds-worker.toml")
        with open(cfg, "w") as f:
            f.write(cm["data"]["fds-worker.toml"])
        run_env = {}
        for k, v in env.items():
            if k == "FDS_CONFIG":
                continue
            if k.endswith("_FILE"):
                # A mounted Secret in the pod; a stand-in file here (check-config reads it).
                v = os.path.join(tmp, k.lower())
                with open(v, "w") as f:
                    f.write("stand-in-secret\n")
            run_env[k] = v
        printed = check_config(worker_bin, cfg, run_env, f"{tag}: worker config")
        if printed:
            effective = printed_config(printed)
            deadline = effective["pipeline"]["shutdown_deadline"]
            secs = float(deadline.rstrip("s")) if deadline.endswith("s") and deadline[:-1].replace(".", "").isdigit() else None
            if secs is not None and grace <= secs:
                problem(f"{tag}: terminationGracePeriodSeconds {grace} must exceed pipeline.shutdown_deadline {deadline}")
            if effective["metrics"]["listen"] != f"0.0.0.0:{port}":
                problem(f"{tag}: effective metrics.listen {effective['metrics']['listen']} is not 0.0.0.0:{port}")

    # The monitoring resources carry files/ unchanged.
    alerts = yaml.safe_load(open(os.path.join(FILES, "alerts.yml")))
    for pr in by_kind.get("PrometheusRule", []):
        if pr["spec"]["groups"] != alerts["groups"]:
            problem(f"{tag}: PrometheusRule groups differ from files/alerts.yml")
    dashboard = json.load(open(os.path.join(FILES, "dashboard.json")))
    for cm in by_kind.get("ConfigMap", []):
        for key, text in cm.get("data", {}).items():
            if key.endswith(".json") and json.loads(text) != dashboard:
                problem(f"{tag}: ConfigMap {cm['metadata']['name']}/{key} differs from files/dashboard.json")
            if key in ("redis.conf", "redis-start.sh", "redis-cluster-init.sh", "redis-remeet.sh"):
                if text.strip() != open(os.path.join(FILES, key)).read().strip():
                    problem(f"{tag}: ConfigMap {cm['metadata']['name']}/{key} differs from files/{key}")


def check_compose(config_json, worker_bin):
    cfg = json.load(open(config_json))
    services = cfg["services"]
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            if vol.get("type") == "bind" and not os.path.exists(vol["source"]):
                problem(f"compose: {name}: bind mount source {vol['source']} does not exist")
        for p in svc.get("ports", []):
            if p.get("host_ip") not in ("127.0.0.1", "::1"):
                problem(f"compose: {name}: port {p.get('published')} is published beyond loopback")
    deps = services["worker"].get("depends_on", {})
    for one_shot in ("kafka-init", "redis-init"):
        if deps.get(one_shot, {}).get("condition") != "service_completed_successfully":
            problem(f"compose: worker must wait for {one_shot} to complete")
    redis_nodes = [n for n in services if n.startswith("redis-") and n != "redis-init"]
    if len(redis_nodes) != 6:
        problem(f"compose: expected 6 Redis nodes, found {redis_nodes}")
    init_nodes = services["redis-init"]["environment"]["REDIS_NODES"].split()
    if sorted(h.split(":")[0] for h in init_nodes) != sorted(redis_nodes):
        problem(f"compose: redis-init REDIS_NODES {init_nodes} are not the Redis services")
    acl = {services[n]["environment"]["REDIS_WORKER_ACL"] for n in redis_nodes}
    if len(acl) != 1:
        problem("compose: the Redis nodes disagree on the worker ACL")
    for name in ("worker", "generator"):
        svc = services[name]
        env = {k: v for k, v in (svc.get("environment") or {}).items() if v is not None}
        container_cfg = env.pop("FDS_CONFIG", "/etc/fds-worker/config/fds-worker.toml")
        src = next((v["source"] for v in svc.get("volumes", []) if v.get("target") == container_cfg), None)
        if src is None:
            problem(f"compose: {name}: FDS_CONFIG {container_cfg} is not a mounted file")
            continue
        # The image sets these; the service may override them.
        run_env = {"FDS_METRICS__LISTEN": "0.0.0.0:9464", "FDS_LOG__FORMAT": "json"}
        run_env.update(env)
        printed = check_config(worker_bin, src, run_env, f"compose: {name}")
        if printed and name == "worker":
            effective = printed_config(printed)
            seeds = [n.split("//")[1].split(":")[0] for n in effective["redis"]["nodes"]]
            if sorted(seeds) != sorted(redis_nodes):
                problem(f"compose: worker redis.nodes {seeds} are not the Redis services {redis_nodes}")
            if effective["kafka"]["brokers"].split(":")[0] not in services:
                problem(f"compose: worker kafka.brokers {effective['kafka']['brokers']} is not a service")
        if printed:
            # The Schema Registry the worker and the generator use is a service they wait for.
            effective = printed_config(printed)
            for url in effective["schemas"]["registry"].get("urls", []):
                host = url.split("//")[1].split("/")[0].split(":")[0]
                if host not in services:
                    problem(f"compose: {name}: schemas.registry url {url} is not a service")
                elif svc.get("depends_on", {}).get(host, {}).get("condition") != "service_healthy":
                    problem(f"compose: {name} must wait for {host} to be healthy")


def check_dockerfile(dockerfile, dockerignore):
    import glob
    allowed = [l.strip()[1:].rstrip("/") for l in open(dockerignore)
               if l.strip().startswith("!")]
    lines = open(dockerfile).read().replace("\\\n", " ").splitlines()
    for line in lines:
        words = line.split()
        if not words or words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources = [w for w in words[1:-1] if not w.startswith("--")]
        for src in sources:
            if not glob.glob(os.path.join(ROOT, src)):
                problem(f"Dockerfile: COPY source {src} does not exist")
            top = src.rstrip("/")
            if not any(top == a or top.startswith(a + "/") for a in allowed):
                problem(f"Dockerfile: COPY source {src} is excluded by .dockerignore")


def main():
    commands = {"chart": 4, "compose": 4, "dockerfile": 4}
    if len(sys.argv) < 2 or sys.argv[1] not in commands or len(sys.argv) < commands[sys.argv[1]]:
        sys.exit(__doc__)
    if sys.argv[1] == "chart":
        check_chart(sys.argv[2], sys.argv[3], set(sys.argv[4:]))
    elif sys.argv[1] == "compose":
        check_compose(sys.argv[2], sys.argv[3])
    else:
        check_dockerfile(sys.argv[2], sys.argv[3])
    for p in problems:
        print(f"  FAIL {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
