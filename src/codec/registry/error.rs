//! [`RegistryError`]: what a Schema Registry call failed with, classified from the HTTP status
//! the registry answered or the kind of transport error, never from message text.

use std::error::Error as _;

use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::RawError;
use thiserror::Error;

/// How a registry failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryErrorKind {
    /// The registry answered 404: it does not know the id (or subject). For a message's writer
    /// schema id this is poison: dead-lettered with the reason.
    NotFound,
    /// Unreachable (connect failure, timeout, connection reset) or 408/429/5xx: retried with
    /// backoff, never a reason to dead-letter.
    Unavailable,
    /// 409 or 422: the registry refused a schema (incompatible with the subject's versions, or
    /// invalid). Stops the worker at start, with the registry's message.
    Rejected,
    /// 401 or 403: the credentials are wrong or lack a permission (a configuration fault).
    Denied,
    /// Any other answer the worker cannot use (another 4xx, a body that is not a schema).
    Invalid,
}

impl RegistryErrorKind {
    /// The stable label (metrics, `fds.error.kind` detail).
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryErrorKind::NotFound => "not_found",
            RegistryErrorKind::Unavailable => "unavailable",
            RegistryErrorKind::Rejected => "rejected",
            RegistryErrorKind::Denied => "denied",
            RegistryErrorKind::Invalid => "invalid",
        }
    }

    /// The kind an HTTP status stands for (`None` for a success status).
    pub fn from_status(status: u16) -> Option<RegistryErrorKind> {
        Some(match status {
            200..=399 => return None,
            404 => RegistryErrorKind::NotFound,
            408 | 429 | 500..=599 => RegistryErrorKind::Unavailable,
            409 | 422 => RegistryErrorKind::Rejected,
            401 | 403 => RegistryErrorKind::Denied,
            _ => RegistryErrorKind::Invalid,
        })
    }

    /// Whether waiting and asking again can help.
    pub fn is_retryable(self) -> bool {
        self == RegistryErrorKind::Unavailable
    }
}

/// A failed registry call: its kind, the HTTP status if the registry answered, and the
/// registry's own message (or the transport error).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("schema registry {operation}: {message}{}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
pub struct RegistryError {
    /// How it is handled.
    pub kind: RegistryErrorKind,
    /// What was asked, e.g. `GET schema id 7`.
    pub operation: String,
    /// The HTTP status, when the registry answered.
    pub status: Option<u16>,
    /// The registry's message, or the transport error.
    pub message: String,
}

impl RegistryError {
    /// Whether waiting and asking again can help.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Classifies an error of `schema_registry_converter` by what it carries: the registry's
    /// error body (`{"error_code", "message"}`; Confluent's codes start with the HTTP status,
    /// `40403` = 404) or the `reqwest` transport error.
    pub(crate) fn from_client(operation: impl Into<String>, error: &SRCError) -> RegistryError {
        let operation = operation.into();
        let mut source = error.source();
        while let Some(cause) = source {
            if let Some(raw) = cause.downcast_ref::<RawError>() {
                // Confluent's code carries the status; a registry answering code 0 (Apicurio
                // 2.x does for a 409) leaves the status the client put in its error line.
                let status =
                    status_of_code(raw.error_code).or_else(|| status_of_client_line(&error.error));
                let kind = match status.and_then(RegistryErrorKind::from_status) {
                    Some(kind) => kind,
                    // A body without a usable code (e.g. a proxy's HTML page): the client's own
                    // judgement of the status (it marks 502/503 retryable).
                    None if error.retriable => RegistryErrorKind::Unavailable,
                    None => RegistryErrorKind::Invalid,
                };
                return RegistryError {
                    kind,
                    operation,
                    status,
                    message: raw.message.clone(),
                };
            }
            if let Some(http) = cause.downcast_ref::<reqwest::Error>() {
                let status = http.status().map(|s| s.as_u16());
                // An answer's status decides; without one it is a transport failure (connect,
                // timeout, reset, cut-off body): unavailable — unless the body arrived whole
                // but is not a schema's JSON.
                let kind = match status.and_then(RegistryErrorKind::from_status) {
                    Some(kind) => kind,
                    None if http.is_decode() => RegistryErrorKind::Invalid,
                    None => RegistryErrorKind::Unavailable,
                };
                return RegistryError {
                    kind,
                    operation,
                    status,
                    message: error_chain(http),
                };
            }
            source = cause.source();
        }
        RegistryError {
            kind: if error.retriable {
                RegistryErrorKind::Unavailable
            } else {
                RegistryErrorKind::Invalid
            },
            operation,
            status: None,
            message: error.error.clone(),
        }
    }
}

/// The HTTP status a registry error code stands for: Confluent's `40403` → 404, a plain
/// `404` → 404 (Apicurio answers some errors so), `0` (no code) → none.
pub(crate) fn status_of_code(code: u32) -> Option<u16> {
    match code {
        100..=599 => Some(code as u16),
        10_000..=59_999 => Some((code / 100) as u16),
        _ => None,
    }
}

/// The HTTP status in `schema_registry_converter`'s own line for a failed call, `HTTP request to
/// schema registry failed with status 409 Conflict` (the client's fixed format, not the
/// registry's text): the first number after `status `.
pub(crate) fn status_of_client_line(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once("status ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|s| (100..=599).contains(s))
}

/// An error and its causes, `: `-joined (reqwest's top line alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify() {
        use RegistryErrorKind::*;
        for (status, kind) in [
            (404, Some(NotFound)),
            (500, Some(Unavailable)),
            (503, Some(Unavailable)),
            (504, Some(Unavailable)),
            (429, Some(Unavailable)),
            (408, Some(Unavailable)),
            (409, Some(Rejected)),
            (422, Some(Rejected)),
            (401, Some(Denied)),
            (403, Some(Denied)),
            (400, Some(Invalid)),
            (200, None),
        ] {
            assert_eq!(RegistryErrorKind::from_status(status), kind, "{status}");
        }
        assert!(Unavailable.is_retryable());
        assert!(!NotFound.is_retryable());
    }

    #[test]
    fn confluent_codes_carry_the_status() {
        assert_eq!(status_of_code(40403), Some(404));
        assert_eq!(status_of_code(40401), Some(404));
        assert_eq!(status_of_code(409), Some(409));
        assert_eq!(status_of_code(50001), Some(500));
        assert_eq!(status_of_code(0), None);
    }

    #[test]
    fn the_clients_line_carries_the_status() {
        let line = "HTTP request to schema registry failed with status 409 Conflict";
        assert_eq!(status_of_client_line(line), Some(409));
        assert_eq!(status_of_client_line("no status here"), None);
        assert_eq!(status_of_client_line("status 9"), None);
    }
}
