//! Just enough of the DNS wire format (RFC 1035) to ask for an A record
//! and read the answer.

use std::net::Ipv4Addr;

/// Type A, class IN.
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

/// A query for the A records of `name`, recursion desired.
pub fn build_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(12 + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    q.extend_from_slice(&[0; 6]); // AN, NS, AR counts
    let labels = name.strip_suffix('.').unwrap_or(name);
    if !labels.is_empty() {
        for label in labels.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!(
                    "invalid DNS name {name:?}: empty or over-long label"
                ));
            }
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
    }
    q.push(0);
    if q.len() - 12 > 255 {
        return Err(format!("invalid DNS name {name:?}: longer than 255 bytes"));
    }
    q.extend_from_slice(&TYPE_A.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// A parsed response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// RCODE (0 = no error).
    pub rcode: u8,
    /// Number of answer records, of any type.
    pub answer_count: u16,
    /// The addresses of the A records among them.
    pub addresses: Vec<Ipv4Addr>,
}

/// Parses a response to query `id`; `None` if it is not one (wrong id,
/// not a response, truncated or malformed).
pub fn parse_response(msg: &[u8], id: u16) -> Option<Response> {
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?])) };
    if u16_at(0)? != id {
        return None;
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return None; // a query, not a response
    }
    let qdcount = u16_at(4)?;
    let ancount = u16_at(6)?;
    let mut pos = 12;
    for _ in 0..qdcount {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..ancount {
        pos = skip_name(msg, pos)?;
        let rtype = u16_at(pos)?;
        let class = u16_at(pos + 2)?;
        let rdlen = usize::from(u16_at(pos + 8)?);
        let rdata = msg.get(pos + 10..pos + 10 + rdlen)?;
        if rtype == TYPE_A && class == CLASS_IN {
            let octets: [u8; 4] = rdata.try_into().ok()?;
            addresses.push(Ipv4Addr::from(octets));
        }
        pos += 10 + rdlen;
    }
    Some(Response {
        rcode: (flags & 0x000f) as u8,
        answer_count: ancount,
        addresses,
    })
}

/// The position after the (possibly compressed) name starting at `pos`.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            // A compression pointer ends the name (two bytes).
            l if l & 0xc0 == 0xc0 => {
                msg.get(pos + 1)?;
                return Some(pos + 2);
            }
            l if l & 0xc0 != 0 => return None,
            l => pos += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encodes_labels() {
        let q = build_query(0x1234, "example.com").unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(
            build_query(1, "example.com.").unwrap(),
            build_query(1, "example.com").unwrap()
        );
    }

    #[test]
    fn query_rejects_bad_names() {
        assert!(build_query(1, "a..b").is_err());
        assert!(build_query(1, &"x".repeat(64)).is_err());
        assert!(build_query(1, &["abc"; 80].join(".")).is_err());
    }

    fn answer(id: u16, ip: [u8; 4]) -> Vec<u8> {
        let mut r = build_query(id, "example.com").unwrap();
        r[2] = 0x81; // QR, RD
        r[3] = 0x80; // RA
        r[7] = 1; // ANCOUNT
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        r.extend_from_slice(&ip);
        r
    }

    #[test]
    fn response_yields_addresses() {
        let r = parse_response(&answer(7, [127, 0, 0, 1]), 7).unwrap();
        assert_eq!(r.rcode, 0);
        assert_eq!(r.answer_count, 1);
        assert_eq!(r.addresses, vec![Ipv4Addr::LOCALHOST]);
    }

    #[test]
    fn response_with_other_id_or_truncated_is_rejected() {
        let a = answer(7, [127, 0, 0, 1]);
        assert_eq!(parse_response(&a, 8), None);
        assert_eq!(parse_response(&a[..a.len() - 1], 7), None);
        assert_eq!(
            parse_response(&build_query(7, "example.com").unwrap(), 7),
            None
        );
    }
}
