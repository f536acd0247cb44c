//! A minimal DER reader: just enough to walk a certificate to its subject name.
//!
//! Only definite lengths are accepted (DER forbids the indefinite form), and every length is
//! checked against the remaining input, so malformed input yields an error, never a panic.

use crate::Error;

/// One DER element: its tag byte, its content, and the whole encoding (tag + length + content).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Element<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub encoded: &'a [u8],
}

pub(crate) const TAG_SEQUENCE: u8 = 0x30;
pub(crate) const TAG_SET: u8 = 0x31;
pub(crate) const TAG_OID: u8 = 0x06;

/// A cursor over a run of DER elements.
pub(crate) struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Reader { input }
    }

    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Read the next element, whatever its tag.
    pub fn next(&mut self) -> Result<Element<'a>, Error> {
        let bad = |why: &str| Error::Der(why.to_string());
        let input = self.input;
        if input.len() < 2 {
            return Err(bad("truncated element header"));
        }
        let tag = input[0];
        if tag & 0x1f == 0x1f {
            return Err(bad("multi-byte tags are not used in certificates"));
        }
        let first = input[1];
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(bad("unsupported length encoding"));
            }
            if input.len() < 2 + n {
                return Err(bad("truncated length"));
            }
            let len = input[2..2 + n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        };
        let end = header.checked_add(len).ok_or_else(|| bad("length overflow"))?;
        if end > input.len() {
            return Err(bad("element longer than its container"));
        }
        self.input = &input[end..];
        Ok(Element { tag, content: &input[header..end], encoded: &input[..end] })
    }

    /// Read the next element and require `tag`.
    pub fn expect(&mut self, tag: u8, what: &str) -> Result<Element<'a>, Error> {
        let el = self.next()?;
        if el.tag != tag {
            return Err(Error::Der(format!("{what}: expected tag {tag:#04x}, found {:#04x}", el.tag)));
        }
        Ok(el)
    }
}

/// Encode a DER length.
pub(crate) fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Encode a whole element from a tag and its content.
pub(crate) fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_length(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// The subject `Name` (a SEQUENCE of RDN SETs) of a DER certificate, as its whole encoding.
pub(crate) fn certificate_subject(cert_der: &[u8]) -> Result<Element<'_>, Error> {
    let cert = Reader::new(cert_der).expect(TAG_SEQUENCE, "Certificate")?;
    let tbs = Reader::new(cert.content).expect(TAG_SEQUENCE, "TBSCertificate")?;
    let mut fields = Reader::new(tbs.content);
    let mut el = fields.next()?;
    if el.tag == 0xa0 {
        // [0] EXPLICIT version
        el = fields.next()?;
    }
    if el.tag != 0x02 {
        return Err(Error::Der("TBSCertificate: serialNumber is not an INTEGER".into()));
    }
    fields.expect(TAG_SEQUENCE, "signature AlgorithmIdentifier")?;
    fields.expect(TAG_SEQUENCE, "issuer Name")?;
    fields.expect(TAG_SEQUENCE, "validity")?;
    fields.expect(TAG_SEQUENCE, "subject Name")
}

/// Dotted form of an OBJECT IDENTIFIER's content.
pub(crate) fn oid_to_string(content: &[u8]) -> Result<String, Error> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for (i, b) in content.iter().enumerate() {
        if value > (u64::MAX >> 7) {
            return Err(Error::Der("OID arc too large".into()));
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let (first, second) = if value < 80 { (value / 40, value % 40) } else { (2, value - 80) };
                arcs.push(first);
                arcs.push(second);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i + 1 == content.len() {
            return Err(Error::Der("truncated OID".into()));
        }
    }
    if arcs.is_empty() {
        return Err(Error::Der("empty OID".into()));
    }
    Ok(arcs.iter().map(u64::to_string).collect::<Vec<_>>().join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536, 1 << 24] {
            let content = vec![7u8; len];
            let enc = encode(0x04, &content);
            let el = Reader::new(&enc).next().unwrap();
            assert_eq!(el.content.len(), len);
            assert_eq!(el.encoded.len(), enc.len());
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let enc = encode(0x30, &[1, 2, 3, 4]);
        for cut in 0..enc.len() {
            assert!(Reader::new(&enc[..cut]).next().is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn oid_text() {
        // 2.5.4.3 (commonName) and 1.2.840.113549.1.9.1 (emailAddress)
        assert_eq!(oid_to_string(&[0x55, 0x04, 0x03]).unwrap(), "2.5.4.3");
        assert_eq!(
            oid_to_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]).unwrap(),
            "1.2.840.113549.1.9.1"
        );
    }
}
