//! `custom-headers`: response headers from a ConfigMap in the Ingress's
//! namespace, one data key per header, set on every answer of its routes.
//!
//! Names and values are checked as ingress-nginx checks them (names of
//! letters, digits, `-` and `_`; values of printable ASCII), and the
//! headers the proxy owns (framing, connection) are refused. ingress-nginx
//! 1.12 also wants each name listed in its `global-allowed-response-headers`
//! option; RustStrom has no such list (see `docs/annotations.md`).

use http::{HeaderName, HeaderValue};

use super::{Side, owned_by_the_proxy, same_namespace};
use crate::model::HeaderEdits;
use crate::source::Snapshot;

/// The headers of the ConfigMap `value` names; `None` when it has none.
pub(super) fn load(
    value: &str,
    namespace: &str,
    snapshot: &Snapshot,
) -> Result<Option<HeaderEdits>, String> {
    let key = same_namespace(value, namespace)?;
    let config_map = snapshot
        .config_maps
        .get(&key)
        .ok_or_else(|| format!("ConfigMap {key} not found"))?;
    let mut edits = HeaderEdits::default();
    for (raw, value) in config_map.data.iter().flatten() {
        let name_ok = !raw.is_empty()
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let name = HeaderName::from_bytes(raw.as_bytes())
            .ok()
            .filter(|_| name_ok)
            .ok_or_else(|| format!("ConfigMap {key}: {raw:?} is not a header name"))?;
        if owned_by_the_proxy(&name, Side::Response) {
            return Err(format!(
                "ConfigMap {key}: {raw:?} is set by the proxy itself"
            ));
        }
        // ingress-nginx's value characters: printable ASCII but no control
        // characters; never empty.
        let value_ok = !value.is_empty() && value.bytes().all(|b| (b' '..=b'~').contains(&b));
        let value = HeaderValue::from_str(value)
            .ok()
            .filter(|_| value_ok)
            .ok_or_else(|| {
                format!("ConfigMap {key}: the value of {raw:?} is not printable ASCII")
            })?;
        edits.set.push((name, value));
    }
    Ok((!edits.set.is_empty()).then_some(edits))
}
