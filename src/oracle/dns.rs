//! The DNS oracle's wire format: recognise a well-formed standard query
//! and build the answer (RFC 1035, just what a loopback responder needs).

use std::net::Ipv4Addr;

/// The address every A query is answered with.
pub const ANSWER_ADDR: Ipv4Addr = Ipv4Addr::LOCALHOST;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const HEADER_LEN: usize = 12;

/// A well-formed query: one question, standard opcode.
#[derive(Debug, PartialEq, Eq)]
pub struct Query<'a> {
    /// The query id.
    pub id: u16,
    /// The query's flags (RD is echoed).
    flags: u16,
    /// The question section as sent: name, type, class.
    question: &'a [u8],
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

/// Parses `msg` as a standard query with exactly one question; `None` if
/// it is anything else (a response, truncated, compressed question name,
/// over-long name...). Trailing records (EDNS OPT) are allowed.
pub fn parse_query(msg: &[u8]) -> Option<Query<'_>> {
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?])) };
    let id = u16_at(0)?;
    let flags = u16_at(2)?;
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if is_response || opcode != 0 || u16_at(4)? != 1 {
        return None;
    }
    let mut pos = HEADER_LEN;
    loop {
        let len = usize::from(*msg.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        // Labels only: a compression pointer has no business in a
        // query's only question.
        if len > 63 {
            return None;
        }
        pos += 1 + len;
        if pos - HEADER_LEN > 255 {
            return None;
        }
    }
    let qtype = u16_at(pos)?;
    let qclass = u16_at(pos + 2)?;
    Some(Query {
        id,
        flags,
        question: &msg[HEADER_LEN..pos + 4],
        qtype,
        qclass,
    })
}

/// The answer to `q`: an A/IN question gets one record, 127.0.0.1 with
/// TTL 0; any other question gets NOERROR with no records.
pub fn answer(q: &Query<'_>) -> Vec<u8> {
    let is_a = q.qtype == TYPE_A && q.qclass == CLASS_IN;
    // QR, AA, RA; RD echoed; opcode 0; RCODE 0.
    let flags: u16 = 0x8000 | 0x0400 | 0x0080 | (q.flags & 0x0100);
    let mut r = Vec::with_capacity(HEADER_LEN + q.question.len() + 16);
    r.extend_from_slice(&q.id.to_be_bytes());
    r.extend_from_slice(&flags.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    r.extend_from_slice(&u16::from(is_a).to_be_bytes()); // ANCOUNT
    r.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    r.extend_from_slice(q.question);
    if is_a {
        r.extend_from_slice(&[0xc0, HEADER_LEN as u8]); // name: pointer to the question
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&0u32.to_be_bytes()); // TTL
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&ANSWER_ADDR.octets());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query as a stub resolver sends it, built independently of the
    /// parser under test.
    fn query(id: u16, qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(b"\x07example\x03com\x00");
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn a_query_gets_loopback_with_ttl_zero() {
        let msg = query(0xbeef, 1);
        let q = parse_query(&msg).expect("well-formed");
        let a = answer(&q);
        assert_eq!(&a[..2], &[0xbe, 0xef]);
        assert_eq!(a[2] & 0x80, 0x80, "QR set");
        assert_eq!(a[2] & 0x01, 0x01, "RD echoed");
        assert_eq!(a[3] & 0x0f, 0, "RCODE 0");
        assert_eq!(&a[6..8], &[0, 1], "one answer");
        assert_eq!(&a[12..msg.len()], &msg[12..], "question echoed");
        let rr = &a[msg.len()..];
        assert_eq!(rr, &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]);
    }

    #[test]
    fn other_types_get_an_empty_noerror() {
        let q = query(1, 28); // AAAA
        let a = answer(&parse_query(&q).expect("well-formed"));
        assert_eq!(&a[6..8], &[0, 0]);
        assert_eq!(a.len(), q.len());
    }

    #[test]
    fn malformed_messages_are_not_queries() {
        let good = query(1, 1);
        assert!(parse_query(&good[..good.len() - 1]).is_none(), "truncated");
        assert!(parse_query(&good[..11]).is_none(), "short header");
        let mut response = good.clone();
        response[2] |= 0x80;
        assert!(parse_query(&response).is_none(), "a response");
        let mut two = good.clone();
        two[5] = 2;
        assert!(parse_query(&two).is_none(), "two questions");
        let mut pointer = good.clone();
        pointer[12] = 0xc0;
        assert!(parse_query(&pointer).is_none(), "compressed name");
        assert!(parse_query(b"hello, world").is_none(), "garbage");
    }

    #[test]
    fn edns_trailer_is_accepted() {
        let mut q = query(9, 1);
        q[11] = 1; // ARCOUNT
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_query(&q).map(|q| q.id), Some(9));
    }
}
