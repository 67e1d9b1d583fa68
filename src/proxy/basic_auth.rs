//! `auth-type: basic`: checks a request's `Authorization: Basic` against the
//! route's users. Hashes are compared in constant time; the slow ones
//! (bcrypt, SHA crypt, MD5 crypt) run on the blocking pool, off the
//! connection tasks. Credentials are never logged.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use md5::{Digest, Md5};
use sha_crypt::{PasswordVerifier, ShaCrypt};
use subtle::ConstantTimeEq;

use crate::model::{BasicAuth, PasswordHash};

/// Whether the request carries the credentials of one of the users.
pub async fn allowed(auth: &BasicAuth, headers: &HeaderMap) -> bool {
    let Some((user, password)) = credentials(headers) else {
        return false;
    };
    let Some(hash) = auth.users.get(&user) else {
        return false;
    };
    match hash {
        PasswordHash::Sha1(digest) => {
            let got = sha1::Sha1::digest(password.as_bytes());
            got.as_slice().ct_eq(digest.as_slice()).into()
        }
        slow => {
            let hash = slow.clone();
            tokio::task::spawn_blocking(move || verify_slow(&hash, password.as_bytes()))
                .await
                .unwrap_or(false)
        }
    }
}

/// `Authorization: Basic base64(user:password)`; the password may hold `:`.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn verify_slow(hash: &PasswordHash, password: &[u8]) -> bool {
    match hash {
        PasswordHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        PasswordHash::ShaCrypt(hash) => ShaCrypt::default()
            .verify_password(password, hash.as_str())
            .is_ok(),
        PasswordHash::Md5Crypt { magic, salt, hash } => {
            let got = md5_crypt(password, magic.as_bytes(), salt.as_bytes());
            got.as_bytes().ct_eq(hash.as_bytes()).into()
        }
        PasswordHash::Sha1(_) => false,
    }
}

/// The crypt alphabet, least significant 6 bits first.
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// MD5 crypt as `htpasswd -m` (`$apr1$`) and `openssl passwd -1` (`$1$`)
/// compute it: the 22 characters after the salt.
fn md5_crypt(password: &[u8], magic: &[u8], salt: &[u8]) -> String {
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(magic)
        .chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alternate[..n]);
        left -= n;
    }
    let mut bits = password.len();
    while bits != 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut sum = ctx.finalize();
    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round % 2 == 1 {
            ctx.update(password);
        } else {
            ctx.update(sum);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round % 2 == 1 {
            ctx.update(sum);
        } else {
            ctx.update(password);
        }
        sum = ctx.finalize();
    }
    let mut out = String::with_capacity(22);
    let mut put = |value: u32, chars: usize| {
        let mut v = value;
        for _ in 0..chars {
            out.push(char::from(ITOA64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(sum[i]);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((b(x) << 16) | (b(y) << 8) | b(z), 4);
    }
    put(b(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes written by `htpasswd` (apache2-utils) and `openssl passwd`.
    #[test]
    fn md5_crypt_matches_htpasswd_and_openssl() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("builder:42", "$apr1$", "MuCUH5/h", "eRVXIKzUfzFlPKtCXCkAl/"),
            ("", "$apr1$", "agm0rbW5", "kR4CDCg0Blcf3R24tm3Q71"),
            ("md5crypt", "$1$", "mTTGowTs", "PMp57rfIqLM8O9hlHbY480"),
        ];
        for (password, magic, salt, want) in cases {
            let got = md5_crypt(password.as_bytes(), magic.as_bytes(), salt.as_bytes());
            assert_eq!(&got, want, "{password:?}");
        }
    }
}
