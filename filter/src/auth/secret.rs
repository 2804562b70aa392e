//! Static credentials (bearer tokens, API keys) as SHA-256 digests.
//!
//! The filter never needs the plaintext: `mcpx render/run` put `sha256:<hex>`
//! digests into the plugin configuration, so no secret appears in rendered
//! output, logs or `/servers`. Hand-written plugin configs may hold the plain
//! value, which is hashed at load. A presented credential is hashed and
//! compared digest-to-digest in constant time: the length of the secret never
//! leaks and a prefix of it never matches.

use sha2::{Digest as _, Sha256};

/// The prefix that marks a value as a digest rather than a plain secret.
pub const DIGEST_PREFIX: &str = "sha256:";

/// The SHA-256 digest of a credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Digest([u8; 32]);

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print even a digest: it would let an offline guess be checked.
        f.write_str("Digest(…)")
    }
}

impl Digest {
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// A configured value: `sha256:<64 hex digits>`, or a plain secret.
    pub fn from_config(value: &str) -> Result<Self, String> {
        match value.strip_prefix(DIGEST_PREFIX) {
            Some(hex) => parse_hex32(hex).map(Self).ok_or_else(|| {
                format!("a {DIGEST_PREFIX} value must be followed by 64 hex digits (the SHA-256 of the token)")
            }),
            None if value.is_empty() => Err("must not be empty".into()),
            None => Ok(Self::of(value.as_bytes())),
        }
    }

    /// Constant-time equality: every byte is always compared.
    pub fn ct_eq(&self, other: &Digest) -> bool {
        let mut diff = 0u8;
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            diff |= a ^ b;
        }
        std::hint::black_box(diff) == 0
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What `mcpx render/run` write instead of a secret: its digest (values that
/// already are digests are kept).
pub fn seal(value: &str) -> Result<String, String> {
    let d = Digest::from_config(value)?;
    Ok(format!("{DIGEST_PREFIX}{}", d.to_hex()))
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let &[hi, lo] = pair else { return None };
        let (hi, lo) = ((hi as char).to_digit(16)?, (lo as char).to_digit(16)?);
        *out.get_mut(i)? = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Named credentials: presented secret -> identity.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    entries: Vec<(String, Digest)>,
}

impl Credentials {
    pub fn push(&mut self, identity: &str, digest: Digest) {
        self.entries.push((identity.to_string(), digest));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity whose credential this is. Every entry is compared (no
    /// early exit), so timing does not tell which entry or how many matched.
    pub fn identify(&self, presented: &str) -> Option<&str> {
        let d = Digest::of(presented.as_bytes());
        let mut found = None;
        for (identity, digest) in &self.entries {
            if digest.ct_eq(&d) && found.is_none() {
                found = Some(identity.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_digest_values_match_the_same_token() {
        let plain = Digest::from_config("s3cret-token").unwrap();
        let sealed = seal("s3cret-token").unwrap();
        assert!(sealed.starts_with("sha256:") && sealed.len() == 7 + 64);
        assert!(!sealed.contains("s3cret"));
        let from_digest = Digest::from_config(&sealed).unwrap();
        assert!(plain.ct_eq(&from_digest));
        assert_eq!(seal(&sealed).unwrap(), sealed, "sealing is idempotent");
    }

    #[test]
    fn prefix_longer_and_case_variants_never_match() {
        let mut c = Credentials::default();
        c.push("ci-bot", Digest::from_config("ci-secret").unwrap());
        c.push("default", Digest::from_config(&seal("anon").unwrap()).unwrap());
        assert_eq!(c.identify("ci-secret"), Some("ci-bot"));
        assert_eq!(c.identify("anon"), Some("default"));
        for bad in ["ci-secre", "ci-secret ", "ci-secretx", "CI-SECRET", "", "c", "anonx", "ano"] {
            assert_eq!(c.identify(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_digests_are_config_errors() {
        assert!(Digest::from_config("sha256:abc").is_err());
        assert!(Digest::from_config(&format!("sha256:{}", "g".repeat(64))).is_err());
        assert!(Digest::from_config("").is_err());
        assert_eq!(format!("{:?}", Digest::of(b"x")), "Digest(…)");
    }
}
