//! Sticky sessions: the opaque cookie value that pins a client to an
//! endpoint. It is a hash of the endpoint's key, never its address, and the
//! same on every replica so that any replica honours it.

use super::maglev::hash_with;

/// The cookie value for an endpoint key: 16 hex digits.
pub fn sticky_id(endpoint_key: &str) -> String {
    format!("{:016x}", hash_with(endpoint_key, 0x5717_c4e5))
}
