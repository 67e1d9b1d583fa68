//! `auth-type: basic`: the users of the `auth-secret`, read from htpasswd
//! lines (`auth-file`, key `auth`) or one key per user (`auth-map`).
//!
//! Errors name the Secret, the user or the line, never a hash.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use k8s_openapi::api::core::v1::Secret;

use crate::model::{BasicAuth, PasswordHash};
use crate::source::{ObjectKey, Snapshot};

/// What the annotations say, already read.
pub(super) struct Asked<'a> {
    pub(super) auth_type: &'a str,
    pub(super) secret: Option<&'a str>,
    pub(super) secret_type: Option<&'a str>,
    pub(super) realm: Option<&'a str>,
}

/// The users of an Ingress in `namespace`; `Err` rejects the Ingress.
pub(super) fn load(
    asked: &Asked<'_>,
    namespace: &str,
    snapshot: &Snapshot,
) -> Result<BasicAuth, String> {
    match asked.auth_type.trim() {
        "basic" => {}
        "digest" => {
            return Err("auth-type \"digest\" is refused: digest authentication is not implemented; use basic".into());
        }
        other => return Err(format!("auth-type {other:?} is not \"basic\"")),
    }
    let name = asked
        .secret
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("auth-type basic needs auth-secret")?;
    let key = match name.split_once('/') {
        Some((ns, _)) if ns != namespace => {
            return Err(format!(
                "auth-secret {name:?} is in another namespace; it must be in {namespace:?}"
            ));
        }
        Some((_, secret)) => ObjectKey::new(namespace, secret),
        None => ObjectKey::new(namespace, name),
    };
    let secret = snapshot
        .secrets
        .get(&key)
        .ok_or_else(|| format!("auth-secret {key}: not found"))?;
    let users = match asked.secret_type.map(str::trim).unwrap_or("auth-file") {
        "auth-file" => {
            let text = field(secret, "auth")
                .ok_or_else(|| format!("auth-secret {key} has no key \"auth\""))?;
            from_file(&text).map_err(|e| format!("auth-secret {key}: {e}"))?
        }
        "auth-map" => from_map(secret).map_err(|e| format!("auth-secret {key}: {e}"))?,
        other => {
            return Err(format!(
                "auth-secret-type {other:?} is not \"auth-file\" or \"auth-map\""
            ));
        }
    };
    if users.is_empty() {
        return Err(format!("auth-secret {key} lists no user"));
    }
    let realm = asked.realm.unwrap_or("");
    // The realm goes into a quoted string: no quotes, backslashes or
    // control characters.
    let plain = realm
        .chars()
        .all(|c| c != '"' && c != '\\' && !c.is_control());
    let challenge = plain
        .then(|| HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")).ok())
        .flatten()
        .ok_or_else(|| {
            format!("auth-realm {realm:?} has quotes, backslashes or control characters")
        })?;
    Ok(BasicAuth { challenge, users })
}

/// A Secret field as text, from `data` or `stringData`.
fn field(secret: &Secret, name: &str) -> Option<String> {
    if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(name)) {
        return String::from_utf8(bytes.0.clone()).ok();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(name))
        .cloned()
}

/// `user:hash` lines; blank lines and `#` comments are skipped.
fn from_file(text: &str) -> Result<BTreeMap<String, PasswordHash>, String> {
    let mut users = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| format!("line {} is not user:hash", i + 1))?;
        let hash = parse_hash(hash).map_err(|e| format!("line {} (user {user:?}): {e}", i + 1))?;
        if users.insert(user.to_string(), hash).is_some() {
            return Err(format!("user {user:?} is listed twice"));
        }
    }
    Ok(users)
}

/// One key per user, its value the hash.
fn from_map(secret: &Secret) -> Result<BTreeMap<String, PasswordHash>, String> {
    let mut users = BTreeMap::new();
    let data = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k, String::from_utf8(v.0.clone()).ok()));
    let strings = secret
        .string_data
        .iter()
        .flatten()
        .map(|(k, v)| (k, Some(v.clone())));
    for (user, hash) in data.chain(strings) {
        let hash = hash.ok_or_else(|| format!("user {user:?}: the hash is not text"))?;
        let hash = parse_hash(hash.trim()).map_err(|e| format!("user {user:?}: {e}"))?;
        users.insert(user.clone(), hash);
    }
    Ok(users)
}

/// The hash forms RustStrom verifies. DES crypt, `{SSHA}` and plain text
/// are refused: weak, and nginx's support for them depends on its libc.
fn parse_hash(hash: &str) -> Result<PasswordHash, String> {
    const UNSUPPORTED: &str =
        "unsupported hash; use bcrypt, apr1 (MD5), {SHA}, SHA-256 or SHA-512 crypt";
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| "{SHA} hash is not base64")?;
        let digest: [u8; 20] = bytes.try_into().map_err(|_| "{SHA} hash is not 20 bytes")?;
        return Ok(PasswordHash::Sha1(digest));
    }
    for prefix in ["$2a$", "$2b$", "$2y$"] {
        if hash.starts_with(prefix) {
            // $2y$NN$ + 22 salt + 31 hash characters.
            if hash.len() != 60 {
                return Err("bcrypt hash is not 60 characters".into());
            }
            return Ok(PasswordHash::Bcrypt(hash.to_string()));
        }
    }
    for magic in ["$apr1$", "$1$"] {
        if let Some(rest) = hash.strip_prefix(magic) {
            let (salt, digest) = rest.split_once('$').ok_or("MD5 hash has no salt")?;
            let ok = salt.len() <= 8 && digest.len() == 22 && !salt.contains('$');
            if !ok {
                return Err("MD5 hash is malformed".into());
            }
            return Ok(PasswordHash::Md5Crypt {
                magic,
                salt: salt.to_string(),
                hash: digest.to_string(),
            });
        }
    }
    if hash.starts_with("$5$") || hash.starts_with("$6$") {
        sha_crypt::PasswordHashRef::new(hash).map_err(|_| "SHA crypt hash is malformed")?;
        return Ok(PasswordHash::ShaCrypt(hash.to_string()));
    }
    Err(UNSUPPORTED.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_forms() {
        for ok in [
            "$2y$05$//La3k/YeMkHf2J.bmexHeTWDdwoYYJRFBIH4sT97UpUYK4UUQrR.",
            "$apr1$MuCUH5/h$eRVXIKzUfzFlPKtCXCkAl/",
            "$1$mTTGowTs$PMp57rfIqLM8O9hlHbY480",
            "{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=",
            "$5$saltsalt$/bz2iOIGpvZ.73pJAwhLFkVraT1uCV0m/AgIwg.qmz4",
        ] {
            assert!(parse_hash(ok).is_ok(), "{ok}");
        }
        for bad in [
            "5MNBtL03a0xEY",
            "{PLAIN}secret",
            "{SSHA}abcd",
            "{SHA}not base64!",
            "$2y$05$short",
            "$apr1$nosalt",
            "",
        ] {
            assert!(parse_hash(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn files() {
        let users = from_file("# admins\nalice:{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=\n\nbob:$1$mTTGowTs$PMp57rfIqLM8O9hlHbY480\n").unwrap();
        assert_eq!(users.len(), 2);
        assert!(from_file("alice").unwrap_err().contains("line 1"));
        let twice = "a:{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=\na:{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=";
        assert!(from_file(twice).unwrap_err().contains("twice"));
        // The error names the line and user, never the hash.
        let err = from_file("eve:hunter2plaintext").unwrap_err();
        assert!(err.contains("eve") && !err.contains("hunter2"), "{err}");
    }
}
