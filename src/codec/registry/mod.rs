//! The Schema Registry client: writer schemas by Confluent id, fetched once and kept in a
//! bounded cache, and registration of the schemas the worker writes.
//!
//! Built on `schema_registry_converter` (its async `schema_registry` calls: several base URLs
//! tried in order, basic auth, a `reqwest` client the worker configures with its timeout and
//! TLS). Only its registry calls are used: the Avro work (reader schemas, resolution, the
//! worker's own fast writer) stays in [`Codec`](super::Codec). Every failure is a
//! [`RegistryError`] whose [`kind`](RegistryError::kind) comes from the HTTP status or the
//! transport error: 404 is poison for a message, unreachable or 5xx is waited out.

mod error;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

pub use error::{RegistryError, RegistryErrorKind};

use crate::config::RegistryConfig;

/// A writer schema as the registry holds it: its id and its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySchema {
    /// The Confluent schema id.
    pub id: u32,
    /// The schema's JSON text, as registered.
    pub text: Arc<str>,
}

/// A Schema Registry: `Send + Sync`, share it (`Arc`). Writer schemas are cached by id (least
/// recently used evicted past `cache_capacity`); a failed fetch is not cached.
pub struct SchemaRegistry {
    settings: SrSettings,
    urls: Vec<String>,
    cache: Mutex<LruCache<u32, Arc<str>>>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

impl SchemaRegistry {
    /// A client for `config` (which must be [enabled](RegistryConfig::enabled) and validated;
    /// secret files resolved). Reads the TLS files; contacts nothing.
    pub fn new(config: &RegistryConfig) -> Result<SchemaRegistry, RegistryError> {
        let setup = |message: String| RegistryError {
            kind: RegistryErrorKind::Invalid,
            operation: "client setup".into(),
            status: None,
            message,
        };
        let (first, rest) = config
            .urls
            .split_first()
            .ok_or_else(|| setup("no `schemas.registry.urls`".into()))?;
        let mut builder = SrSettings::new_builder(trim(first));
        for url in rest {
            builder.add_url(trim(url));
        }
        builder.set_timeout(config.request_timeout);
        if let Some(username) = &config.username {
            builder.set_basic_authorization(username, config.password.as_ref().map(|p| p.expose()));
        }
        // rustls needs one process-wide crypto provider; the worker's is `ring`.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout);
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| setup(format!("reading {}: {e}", path.display())))
        };
        if let Some(ca) = &config.tls.ca_file {
            let pem = read(ca)?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("{}: {e}", ca.display())))?
            {
                client = client.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| setup(format!("{}: {e}", cert.display())))?;
            client = client.identity(identity);
        }
        let settings = builder
            .build_with(client)
            .map_err(|e| RegistryError::from_client("client setup", &e))?;
        let capacity =
            NonZeroUsize::new(config.cache_capacity as usize).unwrap_or(NonZeroUsize::MIN);
        Ok(SchemaRegistry {
            settings,
            urls: config.urls.clone(),
            cache: Mutex::new(LruCache::new(capacity)),
        })
    }

    /// The base URLs, in the order they are tried.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The writer schema of `id` if it is cached (no request).
    pub fn cached(&self, id: u32) -> Option<Arc<str>> {
        self.lock().get(&id).cloned()
    }

    /// Number of cached writer schemas.
    pub fn cached_len(&self) -> usize {
        self.lock().len()
    }

    /// The writer schema of `id`: from the cache, else fetched (`GET /schemas/ids/<id>`) and
    /// cached. One request per call on a miss; retrying is the caller's (see
    /// [`RegistryError::is_retryable`]).
    pub async fn schema(&self, id: u32) -> Result<RegistrySchema, RegistryError> {
        if let Some(text) = self.cached(id) {
            return Ok(RegistrySchema { id, text });
        }
        let operation = || format!("GET schema id {id}");
        let registered = get_schema_by_id(id, &self.settings)
            .await
            .map_err(|e| RegistryError::from_client(operation(), &e))?;
        if registered.schema_type != SchemaType::Avro {
            return Err(RegistryError {
                kind: RegistryErrorKind::Invalid,
                operation: operation(),
                status: None,
                message: format!("schema id {id} is {:?}, not Avro", registered.schema_type),
            });
        }
        let text: Arc<str> = Arc::from(registered.schema);
        self.lock().put(id, Arc::clone(&text));
        Ok(RegistrySchema { id, text })
    }

    /// Registers the Avro schema `schema` under `subject`, or finds it there
    /// (`POST /subjects/<subject>/versions`), and returns its id, which is cached. A registry
    /// whose compatibility rule refuses it answers 409: [`RegistryErrorKind::Rejected`] with the
    /// registry's message.
    ///
    /// A refusal is asked once more, after [`REGISTER_RACE_PAUSE`]: two workers registering a
    /// new subject at the same moment race to create it, and Apicurio answers the loser 409
    /// ("an artifact … already exists") with the same status as a compatibility refusal. The
    /// second request finds the schema the winner registered and returns its id; a real
    /// refusal is refused again.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let post = || {
            let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned());
            post_schema(&self.settings, subject.to_owned(), supplied)
        };
        let what = || format!("register under `{subject}`");
        let registered = match post().await {
            Ok(registered) => registered,
            Err(e) => {
                let error = RegistryError::from_client(what(), &e);
                if error.kind != RegistryErrorKind::Rejected {
                    return Err(error);
                }
                tokio::time::sleep(REGISTER_RACE_PAUSE).await;
                post()
                    .await
                    .map_err(|e| RegistryError::from_client(what(), &e))?
            }
        };
        self.lock().put(registered.id, Arc::from(schema));
        Ok(registered.id)
    }

    /// Adds to `codec` the writer schema of the id in `payload`'s frame, fetched from the
    /// registry unless the codec knows it already: for readers of records written under the
    /// registry's ids (`tail`, a test's ledger). A payload without a frame is left alone.
    pub async fn learn_writer_schema(
        &self,
        codec: &super::Codec,
        payload: &[u8],
    ) -> Result<(), LearnError> {
        let Ok((id, _)) = super::wire::split_frame(payload) else {
            return Ok(());
        };
        if codec.knows_schema(id) {
            return Ok(());
        }
        let schema = self.schema(id).await?;
        codec.add_writer_schema(id, &schema.text, "schema registry")?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<u32, Arc<str>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why [`SchemaRegistry::learn_writer_schema`] could not add a writer schema.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// The registry did not give it.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// It does not resolve against the reader schema of its record type.
    #[error(transparent)]
    Resolution(#[from] super::CatalogError),
}

/// How long [`SchemaRegistry::register`] waits before asking again after a refusal.
pub const REGISTER_RACE_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// A base URL without its trailing `/` (the client appends `/schemas/…`).
fn trim(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}
