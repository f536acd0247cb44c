//! Certificate subject names: OpenSSL's subject hash (`X509_NAME_hash`) and a readable form.
//!
//! The hash is what `openssl x509 -noout -subject_hash` prints and what `c_rehash` uses for the
//! `/etc/ssl/certs/HASH.0` links: SHA-1 over the *canonical* encoding of the subject name, first
//! four bytes read little-endian. The canonical encoding is the RDN SETs concatenated (no outer
//! SEQUENCE), where every text value (UTF8String, PrintableString, T61String, IA5String,
//! VisibleString, BMPString, UniversalString) is converted to a UTF8String, ASCII-lowercased,
//! stripped of leading and trailing whitespace, and has each inner run of whitespace replaced by
//! one space. Values of other types are kept as they are.

use crate::der::{self, Reader, TAG_OID, TAG_SEQUENCE, TAG_SET};
use crate::Error;

const TAG_UTF8: u8 = 0x0c;
const TAG_PRINTABLE: u8 = 0x13;
const TAG_T61: u8 = 0x14;
const TAG_IA5: u8 = 0x16;
const TAG_VISIBLE: u8 = 0x1a;
const TAG_UNIVERSAL: u8 = 0x1c;
const TAG_BMP: u8 = 0x1e;

/// OpenSSL subject hash of a DER certificate (`openssl x509 -subject_hash`).
pub fn subject_hash(cert_der: &[u8]) -> Result<u32, Error> {
    let subject = der::certificate_subject(cert_der)?;
    name_hash(subject.encoded)
}

/// [`subject_hash`] as the eight lowercase hex digits used in `/etc/ssl/certs/HASH.0`.
pub fn subject_hash_hex(cert_der: &[u8]) -> Result<String, Error> {
    Ok(format!("{:08x}", subject_hash(cert_der)?))
}

/// OpenSSL `X509_NAME_hash` of a DER-encoded `Name`.
pub fn name_hash(name_der: &[u8]) -> Result<u32, Error> {
    let canonical = canonical_name(name_der)?;
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &canonical);
    let d = digest.as_ref();
    Ok(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
}

/// The canonical encoding hashed by [`name_hash`].
fn canonical_name(name_der: &[u8]) -> Result<Vec<u8>, Error> {
    let name = Reader::new(name_der).expect(TAG_SEQUENCE, "Name")?;
    let mut rdns = Reader::new(name.content);
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let rdn = rdns.expect(TAG_SET, "RelativeDistinguishedName")?;
        let mut attrs = Reader::new(rdn.content);
        let mut entries: Vec<Vec<u8>> = Vec::new();
        while !attrs.is_empty() {
            let atv = attrs.expect(TAG_SEQUENCE, "AttributeTypeAndValue")?;
            let mut parts = Reader::new(atv.content);
            let oid = parts.expect(TAG_OID, "attribute type")?;
            let value = parts.next()?;
            let mut content = oid.encoded.to_vec();
            match canonical_text(value.tag, value.content)? {
                Some(text) => content.extend(der::encode(TAG_UTF8, &text)),
                None => content.extend_from_slice(value.encoded),
            }
            entries.push(der::encode(TAG_SEQUENCE, &content));
        }
        // DER orders the members of a SET OF by their encodings.
        entries.sort_by(|a, b| {
            let n = a.len().min(b.len());
            a[..n].cmp(&b[..n]).then(a.len().cmp(&b.len()))
        });
        out.extend(der::encode(TAG_SET, &entries.concat()));
    }
    Ok(out)
}

/// Decode a text value to UTF-8 the way OpenSSL's `ASN1_STRING_to_UTF8` does; `None` for
/// types that are not text (kept verbatim in the canonical form).
fn decode_text(tag: u8, content: &[u8]) -> Result<Option<String>, Error> {
    let bad = |what: &str| Error::Der(format!("invalid {what} in a name"));
    Ok(Some(match tag {
        TAG_UTF8 => String::from_utf8(content.to_vec()).map_err(|_| bad("UTF8String"))?,
        // One byte per character; OpenSSL reads T61String bytes as Latin-1.
        TAG_PRINTABLE | TAG_T61 | TAG_IA5 | TAG_VISIBLE => content.iter().map(|b| char::from(*b)).collect(),
        TAG_BMP => {
            if !content.len().is_multiple_of(2) {
                return Err(bad("BMPString"));
            }
            let units = content.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units).collect::<Result<String, _>>().map_err(|_| bad("BMPString"))?
        }
        TAG_UNIVERSAL => {
            if !content.len().is_multiple_of(4) {
                return Err(bad("UniversalString"));
            }
            content
                .chunks(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or_else(|| bad("UniversalString"))?
        }
        _ => return Ok(None),
    }))
}

fn canonical_text(tag: u8, content: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let Some(text) = decode_text(tag, content)? else { return Ok(None) };
    // OpenSSL's isspace: space, \t, \n, \v, \f, \r.
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let bytes = text.as_bytes();
    let start = bytes.iter().position(|b| !is_space(*b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_space(*b)).map_or(start, |i| i + 1);
    let mut out = Vec::with_capacity(end - start);
    let mut in_space = false;
    for &b in &bytes[start..end] {
        if is_space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            in_space = false;
            out.push(b.to_ascii_lowercase());
        }
    }
    Ok(Some(out))
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "serialNumber",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// A readable one-line form of a certificate's subject, e.g. `O=system:masters, CN=minikube-user`
/// (attributes in certificate order; unknown types by dotted OID; non-text values as `#hex`).
pub fn subject_string(cert_der: &[u8]) -> Result<String, Error> {
    let subject = der::certificate_subject(cert_der)?;
    let mut parts = Vec::new();
    let mut rdns = Reader::new(subject.content);
    while !rdns.is_empty() {
        let rdn = rdns.expect(TAG_SET, "RelativeDistinguishedName")?;
        let mut attrs = Reader::new(rdn.content);
        while !attrs.is_empty() {
            let atv = attrs.expect(TAG_SEQUENCE, "AttributeTypeAndValue")?;
            let mut p = Reader::new(atv.content);
            let oid = der::oid_to_string(p.expect(TAG_OID, "attribute type")?.content)?;
            let value = p.next()?;
            let key = short_name(&oid).map_or(oid.clone(), str::to_string);
            let text = match decode_text(value.tag, value.content)? {
                Some(t) => t,
                None => format!("#{}", value.encoded.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            };
            parts.push(format!("{key}={text}"));
        }
    }
    Ok(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atv(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut c = der::encode(TAG_OID, oid);
        c.extend(der::encode(tag, value));
        der::encode(TAG_SEQUENCE, &c)
    }

    #[test]
    fn canonical_text_folds_case_and_space() {
        let c = canonical_text(TAG_PRINTABLE, b"  Hello \t  World  ").unwrap().unwrap();
        assert_eq!(c, b"hello world");
        let c = canonical_text(TAG_UTF8, "  ÄB  c".as_bytes()).unwrap().unwrap();
        assert_eq!(c, "Äb c".as_bytes(), "only ASCII letters are lowered");
        assert_eq!(canonical_text(TAG_IA5, b"   ").unwrap().unwrap(), b"");
        assert!(canonical_text(0x12, b"123").unwrap().is_none(), "NumericString kept verbatim");
        let bmp: Vec<u8> = "Ab".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(canonical_text(TAG_BMP, &bmp).unwrap().unwrap(), b"ab");
        assert_eq!(canonical_text(TAG_T61, &[0xe9, b'X']).unwrap().unwrap(), "éx".as_bytes());
    }

    #[test]
    fn canonical_name_is_rdn_sets_without_outer_sequence() {
        let cn = [0x55, 0x04, 0x03];
        let rdn = der::encode(TAG_SET, &atv(&cn, TAG_PRINTABLE, b" Foo  Bar"));
        let name = der::encode(TAG_SEQUENCE, &rdn);
        let canon = canonical_name(&name).unwrap();
        let expected = der::encode(TAG_SET, &atv(&cn, TAG_UTF8, b"foo bar"));
        assert_eq!(canon, expected);
    }

    #[test]
    fn empty_name_hashes_empty_input() {
        let name = der::encode(TAG_SEQUENCE, &[]);
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b"");
        let want = u32::from_le_bytes(d.as_ref()[..4].try_into().unwrap());
        assert_eq!(name_hash(&name).unwrap(), want);
    }
}
