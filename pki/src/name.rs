//! Certificate subject names: OpenSSL's subject hash (`X509_NAME_hash`) and a readable form.
//!
//! The hash is what `openssl x509 -noout -subject_hash` prints and what `c_rehash` uses for the
//! `/etc/ssl/certs/HASH.0` links: SHA-1 over the *canonical* encoding of the subject name, first
//! four bytes read little-endian. The canonical encoding is the RDN SETs concatenated (no outer
//! SEQUENCE), where every text value (UTF8String, PrintableString, T61String, IA5String,
//! VisibleString, BMPString, UniversalString) is converted to a UTF8String, ASCII-lowercased,
//! stripped of leading and trailing whitespace, and has each inner run of whitespace replaced by
//! one space. Values of other types are kept as they are.
//!
//! Certificates and names are read with x509-parser; only the canonical form and its hash are ours.

use x509_parser::asn1_rs::{Any, Class, FromDer, Sequence, Set, Tag, ToDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::X509Name;

use crate::Error;

/// A DER certificate, parsed.
fn certificate(cert_der: &[u8]) -> Result<X509Certificate<'_>, Error> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| Error::Der(format!("Certificate: {e}")))?;
    Ok(cert)
}

/// The DER encoding of one ASN.1 value.
fn der<T: ToDer>(value: &T) -> Result<Vec<u8>, Error> {
    value.to_der_vec().map_err(|e| Error::Der(format!("encoding the canonical name: {e}")))
}

/// OpenSSL subject hash of a DER certificate (`openssl x509 -subject_hash`).
pub fn subject_hash(cert_der: &[u8]) -> Result<u32, Error> {
    Ok(hash(&canonical_name(certificate(cert_der)?.subject())?))
}

/// [`subject_hash`] as the eight lowercase hex digits used in `/etc/ssl/certs/HASH.0`.
pub fn subject_hash_hex(cert_der: &[u8]) -> Result<String, Error> {
    Ok(format!("{:08x}", subject_hash(cert_der)?))
}

/// `sha256:<hex>` of a DER certificate's SubjectPublicKeyInfo: the pin kubeadm's
/// `--discovery-token-ca-cert-hash` takes to trust the cluster CA when a node joins.
pub fn public_key_pin(cert_der: &[u8]) -> Result<String, Error> {
    let cert = certificate(cert_der)?;
    Ok(format!("sha256:{}", crate::digest::sha256_hex(cert.tbs_certificate.subject_pki.raw)))
}

/// OpenSSL `X509_NAME_hash` of a DER-encoded `Name`.
pub fn name_hash(name_der: &[u8]) -> Result<u32, Error> {
    let (_, name) = X509Name::from_der(name_der).map_err(|e| Error::Der(format!("Name: {e}")))?;
    Ok(hash(&canonical_name(&name)?))
}

/// The first four bytes of the SHA-1 of the canonical form, little-endian.
fn hash(canonical: &[u8]) -> u32 {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, canonical);
    let d = digest.as_ref();
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// The canonical encoding hashed by [`name_hash`].
fn canonical_name(name: &X509Name<'_>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for rdn in name.iter() {
        let mut entries: Vec<Vec<u8>> = Vec::new();
        for atv in rdn.iter() {
            let mut content = der(atv.attr_type())?;
            match canonical_text(atv.attr_value())? {
                Some(text) => content.extend(der(&Any::from_tag_and_data(Tag::Utf8String, &text))?),
                None => content.extend(der(atv.attr_value())?),
            }
            entries.push(der(&Sequence::new(content.into()))?);
        }
        // DER orders the members of a SET OF by their encodings.
        entries.sort();
        out.extend(der(&Set::new(entries.concat().into()))?);
    }
    Ok(out)
}

/// Decode a text value to UTF-8 the way OpenSSL's `ASN1_STRING_to_UTF8` does; `None` for
/// types that are not text (kept verbatim in the canonical form).
fn decode_text(value: &Any<'_>) -> Result<Option<String>, Error> {
    if value.class() != Class::Universal || value.header.is_constructed() {
        return Ok(None);
    }
    let content = value.data;
    let bad = |what: &str| Error::Der(format!("invalid {what} in a name"));
    Ok(Some(match value.tag() {
        Tag::Utf8String => String::from_utf8(content.to_vec()).map_err(|_| bad("UTF8String"))?,
        // One byte per character; OpenSSL reads T61String bytes as Latin-1.
        Tag::PrintableString | Tag::T61String | Tag::Ia5String | Tag::VisibleString => content.iter().map(|b| char::from(*b)).collect(),
        Tag::BmpString => {
            if !content.len().is_multiple_of(2) {
                return Err(bad("BMPString"));
            }
            let units = content.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units).collect::<Result<String, _>>().map_err(|_| bad("BMPString"))?
        }
        Tag::UniversalString => {
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

fn canonical_text(value: &Any<'_>) -> Result<Option<Vec<u8>>, Error> {
    let Some(text) = decode_text(value)? else { return Ok(None) };
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
    let cert = certificate(cert_der)?;
    let mut parts = Vec::new();
    for atv in cert.subject().iter_attributes() {
        let oid = atv.attr_type().to_id_string();
        let key = short_name(&oid).map_or(oid.clone(), str::to_string);
        let text = match decode_text(atv.attr_value())? {
            Some(t) => t,
            None => format!("#{}", crate::digest::hex(&der(atv.attr_value())?)),
        };
        parts.push(format!("{key}={text}"));
    }
    Ok(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::asn1_rs::Oid;

    const CN: &[u64] = &[2, 5, 4, 3];

    fn text(tag: Tag, bytes: &[u8]) -> Option<Vec<u8>> {
        canonical_text(&Any::from_tag_and_data(tag, bytes)).unwrap()
    }

    /// One AttributeTypeAndValue, encoded.
    fn atv(oid: &[u64], tag: Tag, value: &[u8]) -> Vec<u8> {
        let mut c = der(&Oid::from(oid).unwrap()).unwrap();
        c.extend(der(&Any::from_tag_and_data(tag, value)).unwrap());
        der(&Sequence::new(c.into())).unwrap()
    }

    fn set(content: &[u8]) -> Vec<u8> {
        der(&Set::new(content.to_vec().into())).unwrap()
    }

    fn name(rdns: &[Vec<u8>]) -> Vec<u8> {
        der(&Sequence::new(rdns.concat().into())).unwrap()
    }

    #[test]
    fn canonical_text_folds_case_and_space() {
        assert_eq!(text(Tag::PrintableString, b"  Hello \t  World  ").unwrap(), b"hello world");
        assert_eq!(text(Tag::Utf8String, "  ÄB  c".as_bytes()).unwrap(), "Äb c".as_bytes(), "only ASCII letters are lowered");
        assert_eq!(text(Tag::Ia5String, b"   ").unwrap(), b"");
        assert!(text(Tag::NumericString, b"123").is_none(), "NumericString kept verbatim");
        let bmp: Vec<u8> = "Ab".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(text(Tag::BmpString, &bmp).unwrap(), b"ab");
        assert_eq!(text(Tag::T61String, &[0xe9, b'X']).unwrap(), "éx".as_bytes());
        let tagged = Any::from_tag_and_data(Tag::Utf8String, b"X").with_class(Class::ContextSpecific);
        assert!(canonical_text(&tagged).unwrap().is_none(), "only universal string types are text");
    }

    #[test]
    fn canonical_name_is_rdn_sets_without_outer_sequence() {
        let encoded = name(&[set(&atv(CN, Tag::PrintableString, b" Foo  Bar"))]);
        let (_, parsed) = X509Name::from_der(&encoded).unwrap();
        assert_eq!(canonical_name(&parsed).unwrap(), set(&atv(CN, Tag::Utf8String, b"foo bar")));
    }

    #[test]
    fn members_of_a_multi_valued_rdn_are_sorted_by_their_encoding() {
        let o = [2, 5, 4, 10];
        let (a, b) = (atv(CN, Tag::Utf8String, b"b"), atv(&o, Tag::Utf8String, b"a"));
        let (ba, ab) = (name(&[set(&[b.clone(), a.clone()].concat())]), name(&[set(&[a.clone(), b.clone()].concat())]));
        let (_, first) = X509Name::from_der(&ba).unwrap();
        let (_, second) = X509Name::from_der(&ab).unwrap();
        assert_eq!(canonical_name(&first).unwrap(), set(&[a, b].concat()));
        assert_eq!(canonical_name(&first).unwrap(), canonical_name(&second).unwrap());
    }

    #[test]
    fn empty_name_hashes_empty_input() {
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b"");
        let want = u32::from_le_bytes(d.as_ref()[..4].try_into().unwrap());
        assert_eq!(name_hash(&name(&[])).unwrap(), want);
    }

    #[test]
    fn malformed_input_is_an_error() {
        let good = name(&[set(&atv(CN, Tag::Utf8String, b"x"))]);
        for cut in 0..good.len() {
            assert!(name_hash(&good[..cut]).is_err(), "Name cut at {cut}");
        }
        assert!(matches!(subject_hash(b"\x30\x03\x02\x01"), Err(Error::Der(_))));
    }
}
