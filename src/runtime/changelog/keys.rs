//! The state topics' key layout (see the table in [`super`]): the input topic is part of
//! every key, a tenant's ticket carries its tenant length-prefixed, so keys split
//! unambiguously.

/// Key of a ticket record: `t/<topic>/<ticket>` for a ticket without tenant (the form of
/// every earlier version), `T/<topic>/<tenant length>/<tenant>/<ticket>` for a tenant's.
pub fn ticket_key(input_topic: &str, tenant: &str, ticket: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + input_topic.len() + tenant.len() + ticket.len());
    if tenant.is_empty() {
        k.extend_from_slice(b"t/");
        k.extend_from_slice(input_topic.as_bytes());
        k.push(b'/');
    } else {
        k.extend_from_slice(b"T/");
        k.extend_from_slice(input_topic.as_bytes());
        k.push(b'/');
        k.extend_from_slice(tenant.len().to_string().as_bytes());
        k.push(b'/');
        k.extend_from_slice(tenant.as_bytes());
        k.push(b'/');
    }
    k.extend_from_slice(ticket.as_bytes());
    k
}

/// `<tenant length>/<tenant>/<ticket>` (the rest of a `T/<topic>/` key) → (tenant, ticket).
pub(super) fn split_tenant_key(rest: &[u8]) -> Option<(&str, &str)> {
    let slash = rest.iter().position(|&b| b == b'/')?;
    let len: usize = std::str::from_utf8(&rest[..slash]).ok()?.parse().ok()?;
    let rest = &rest[slash + 1..];
    if rest.len() <= len || rest[len] != b'/' {
        return None;
    }
    let tenant = std::str::from_utf8(&rest[..len]).ok()?;
    let ticket = std::str::from_utf8(&rest[len + 1..]).ok()?;
    Some((tenant, ticket))
}

/// Key of an input partition's partition-level state.
pub fn partition_key(input_topic: &str) -> Vec<u8> {
    format!("p/{input_topic}").into_bytes()
}

/// Key of a surge partition's detector state (in the surge-state topic).
pub fn surge_key(repartition_topic: &str) -> Vec<u8> {
    format!("s/{repartition_topic}").into_bytes()
}

/// Key of the tombstone a release of a held state partition writes in a transaction it
/// aborts (see [`super::held`]): never committed, and not a key a restore reads.
pub const RELEASE_KEY: &[u8] = b"x/release";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_key_is_none_of_the_keys_a_restore_reads() {
        for prefix in [&b"t/"[..], b"T/", b"p/", b"s/"] {
            assert!(!RELEASE_KEY.starts_with(prefix));
        }
    }

    #[test]
    fn keys_split_unambiguously() {
        assert_eq!(ticket_key("conv", "", "T/1"), b"t/conv/T/1".to_vec());
        assert!(ticket_key("conv", "", "T1").starts_with(&ticket_key("conv", "", "")));
        assert!(!ticket_key("conv2", "", "T1").starts_with(&ticket_key("conv", "", "")));
        let k = ticket_key("conv", "a/b", "T/1");
        assert_eq!(k, b"T/conv/3/a/b/T/1".to_vec());
        assert_eq!(
            split_tenant_key(k.strip_prefix(b"T/conv/".as_slice()).unwrap()),
            Some(("a/b", "T/1"))
        );
        assert_eq!(split_tenant_key(b"9/ab/c"), None);
        assert_eq!(partition_key("conv"), b"p/conv".to_vec());
        assert_eq!(surge_key("rep"), b"s/rep".to_vec());
    }
}
