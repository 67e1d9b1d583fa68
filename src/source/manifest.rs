//! Parsing Kubernetes manifests: multi-document YAML or JSON, `List` kinds,
//! typed into the kinds the compile step reads.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::crd::BalancerPolicy;

/// One object of a kind RustStrom reads. `Debug` never prints a Secret's
/// data: it holds private keys.
#[derive(Clone)]
pub enum Object {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    /// Read for the certificates of `spec.tls` and the Secrets annotations
    /// name (`auth-secret`).
    Secret(Arc<Secret>),
    /// Read for the ConfigMaps annotations name (`custom-headers`,
    /// `auth-proxy-set-headers`).
    ConfigMap(Arc<ConfigMap>),
    BalancerPolicy(Arc<BalancerPolicy>),
}

/// Why a manifest could not be read. The whole file is refused so that a
/// half-read file never replaces its last good version.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not valid YAML or JSON.
    #[error("document {doc}: {source}")]
    Syntax {
        doc: usize,
        #[source]
        source: serde_norway::Error,
    },
    /// A document of a kind we read has fields of the wrong shape.
    #[error("document {doc} ({kind} {name}): {source}")]
    Invalid {
        doc: usize,
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// A kind we read, in an API version we do not.
    #[error("document {doc}: {kind} in apiVersion {api_version} is not supported (want {want})")]
    Version {
        doc: usize,
        kind: String,
        api_version: String,
        want: &'static str,
    },
    /// A Secret whose fields have the wrong shape. The parser's own message
    /// is not kept: it may quote the value, which may be a private key.
    #[error(
        "document {doc} (Secret {name}): data and stringData must map names to strings (base64 in data)"
    )]
    InvalidSecret { doc: usize, name: String },
}

// === impl Object ===

impl Object {
    /// The key the object is filed under in a [`super::Snapshot`]: its
    /// namespace and name (the name alone for an IngressClass, which has no
    /// namespace).
    pub fn key(&self) -> super::ObjectKey {
        let meta = match self {
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => {
                return super::ObjectKey::new("", o.metadata.name.clone().unwrap_or_default());
            }
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::BalancerPolicy(o) => &o.metadata,
        };
        super::ObjectKey::of(meta)
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Ingress(o) => f.debug_tuple("Ingress").field(o).finish(),
            Object::IngressClass(o) => f.debug_tuple("IngressClass").field(o).finish(),
            Object::Service(o) => f.debug_tuple("Service").field(o).finish(),
            Object::EndpointSlice(o) => f.debug_tuple("EndpointSlice").field(o).finish(),
            Object::BalancerPolicy(o) => f.debug_tuple("BalancerPolicy").field(o).finish(),
            Object::ConfigMap(o) => f.debug_tuple("ConfigMap").field(o).finish(),
            Object::Secret(o) => f
                .debug_tuple("Secret")
                .field(&super::ObjectKey::of(&o.metadata).to_string())
                .finish(),
        }
    }
}

/// Parses one file's text (YAML, which includes JSON). Documents of other
/// kinds (Deployments, Pods, ...) are skipped, so a folder of ordinary
/// application manifests can be used as it is.
pub fn parse_manifest(text: &str) -> Result<Vec<Object>, ParseError> {
    let mut out = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let value = serde_json::Value::deserialize(document)
            .map_err(|source| ParseError::Syntax { doc, source })?;
        push_value(doc, value, &mut out)?;
    }
    Ok(out)
}

fn push_value(
    doc: usize,
    value: serde_json::Value,
    out: &mut Vec<Object>,
) -> Result<(), ParseError> {
    // Empty documents (`---` at the end, comments only) are fine.
    if value.is_null() {
        return Ok(());
    }
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string();
    let api_version = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string();
    let want = match kind.as_str() {
        "List" | "IngressList" | "ServiceList" | "EndpointSliceList" | "IngressClassList"
        | "SecretList" | "ConfigMapList" | "BalancerPolicyList" => {
            if let Some(serde_json::Value::Array(items)) = value.get("items") {
                for item in items.clone() {
                    push_value(doc, item, out)?;
                }
            }
            return Ok(());
        }
        "Ingress" | "IngressClass" => "networking.k8s.io/v1",
        "Service" | "Secret" | "ConfigMap" => "v1",
        "EndpointSlice" => "discovery.k8s.io/v1",
        "BalancerPolicy" => "ruststrom.io/v1alpha1",
        _ => return Ok(()),
    };
    if api_version != want {
        return Err(ParseError::Version {
            doc,
            kind,
            api_version,
            want,
        });
    }
    let object = match kind.as_str() {
        "Ingress" => Object::Ingress(typed(doc, &kind, value)?),
        "IngressClass" => Object::IngressClass(typed(doc, &kind, value)?),
        "Service" => Object::Service(typed(doc, &kind, value)?),
        "Secret" => Object::Secret(typed(doc, &kind, value).map_err(|e| match e {
            ParseError::Invalid { doc, name, .. } => ParseError::InvalidSecret { doc, name },
            other => other,
        })?),
        "BalancerPolicy" => Object::BalancerPolicy(typed(doc, &kind, value)?),
        "ConfigMap" => Object::ConfigMap(typed(doc, &kind, value)?),
        _ => Object::EndpointSlice(typed(doc, &kind, value)?),
    };
    out.push(object);
    Ok(())
}

fn typed<T: DeserializeOwned>(
    doc: usize,
    kind: &str,
    value: serde_json::Value,
) -> Result<Arc<T>, ParseError> {
    let name = value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or("<unnamed>")
        .to_string();
    serde_json::from_value(value)
        .map(Arc::new)
        .map_err(|source| ParseError::Invalid {
            doc,
            kind: kind.to_string(),
            name,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multi_document_yaml_and_skips_other_kinds() {
        let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
# only a comment
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
        let objects = parse_manifest(text).unwrap();
        assert_eq!(objects.len(), 2);
        assert!(
            matches!(&objects[0], Object::Service(s) if s.metadata.namespace.as_deref() == Some("shop"))
        );
        assert!(matches!(&objects[1], Object::Ingress(_)));
    }

    #[test]
    fn reads_json_and_lists() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "c"},
             "spec": {"controller": "ruststrom.io/ingress-controller"}}
        ]}"#;
        let objects = parse_manifest(text).unwrap();
        assert_eq!(objects.len(), 2);
    }

    #[test]
    fn reads_secrets_from_data_and_string_data_without_printing_them() {
        let text = r#"
apiVersion: v1
kind: Secret
metadata: {name: web-tls, namespace: shop}
type: kubernetes.io/tls
data: {tls.crt: Y2VydA==, tls.key: a2V5}
---
apiVersion: v1
kind: Secret
metadata: {name: other}
type: kubernetes.io/tls
stringData: {tls.crt: "cert text", tls.key: "key text"}
"#;
        let objects = parse_manifest(text).unwrap();
        let Object::Secret(s) = &objects[0] else {
            panic!("{objects:?}");
        };
        let data = s.data.as_ref().unwrap();
        assert_eq!(data["tls.crt"].0, b"cert");
        assert_eq!(data["tls.key"].0, b"key");
        assert!(
            matches!(&objects[1], Object::Secret(s) if s.string_data.as_ref().unwrap()["tls.key"] == "key text")
        );
        let printed = format!("{objects:?}");
        assert!(printed.contains("shop/web-tls"), "{printed}");
        assert!(
            !printed.contains("key text") && !printed.contains("107, 101, 121"),
            "{printed}"
        );
    }

    #[test]
    fn refuses_broken_files_whole() {
        let syntax = "apiVersion: v1\nkind: Service\nmetadata: {name: a\n";
        assert!(matches!(
            parse_manifest(syntax),
            Err(ParseError::Syntax { .. })
        ));

        let shape = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: 80}\n";
        let err = parse_manifest(shape).unwrap_err();
        assert!(matches!(err, ParseError::Invalid { .. }));
        assert!(err.to_string().contains("Service a"), "{err}");

        let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: \"-----BEGIN PRIVATE KEY-----\"\n";
        let err = parse_manifest(secret).unwrap_err();
        assert!(matches!(err, ParseError::InvalidSecret { .. }), "{err}");
        assert!(!err.to_string().contains("PRIVATE"), "{err}");
        assert!(!format!("{err:?}").contains("PRIVATE"), "{err:?}");

        let old = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: a}\n";
        assert!(matches!(
            parse_manifest(old),
            Err(ParseError::Version { .. })
        ));
    }
}
