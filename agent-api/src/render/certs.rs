//! Where certificates and trusted CAs go.

/// A trusted CA's file: `CA_SHARE_DIR/NAME`.
pub const CA_SHARE_DIR: &str = "/usr/share/ca-certificates";
/// Its links: `CA_LINK_DIR/NAME` and `CA_LINK_DIR/HASH.0` (OpenSSL subject hash).
pub const CA_LINK_DIR: &str = "/etc/ssl/certs";
