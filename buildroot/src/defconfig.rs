//! Reading buildroot defconfig and `.config` files (kconfig syntax).

use std::path::Path;

/// One option line: `SYM=value` or `# SYM is not set` (value `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOption {
    pub symbol: String,
    /// The raw value (quotes kept for strings); `None` for `# SYM is not set`.
    pub value: Option<String>,
    /// 1-based line number in the file.
    pub line: usize,
}

impl ConfigOption {
    /// The value of a string option without its quotes (`None` if not a quoted string).
    pub fn string_value(&self) -> Option<&str> {
        let v = self.value.as_deref()?;
        v.strip_prefix('"')?.strip_suffix('"')
    }
}

/// Parse the option lines of a defconfig or .config; other comments and blank lines are skipped.
pub fn parse(text: &str) -> Vec<ConfigOption> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(sym) = rest.strip_suffix(" is not set") {
                if is_symbol(sym) {
                    out.push(ConfigOption { symbol: sym.to_string(), value: None, line: i + 1 });
                }
            }
            continue;
        }
        if let Some((sym, value)) = line.split_once('=') {
            if is_symbol(sym) {
                out.push(ConfigOption {
                    symbol: sym.to_string(),
                    value: Some(value.to_string()),
                    line: i + 1,
                });
            }
        }
    }
    out
}

/// Read and parse a file.
pub fn read(path: &Path) -> std::io::Result<Vec<ConfigOption>> {
    Ok(parse(&std::fs::read_to_string(path)?))
}

/// A kconfig symbol name as buildroot writes them (`BR2_...`).
pub fn is_symbol(s: &str) -> bool {
    s.starts_with("BR2_") && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Every `BR2_PACKAGE_*` token in a kconfig expression or line (`select X`, `depends on A && !B`).
pub fn package_symbols_in(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("BR2_PACKAGE_") && is_symbol(t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_unset_lines() {
        let opts = parse("# a comment\nBR2_x86_64=y\n\nBR2_FOO=\"a b\"\n# BR2_BAR is not set\nnot=this\n");
        assert_eq!(opts.len(), 3);
        assert_eq!(opts[0], ConfigOption { symbol: "BR2_x86_64".into(), value: Some("y".into()), line: 2 });
        assert_eq!(opts[1].string_value(), Some("a b"));
        assert_eq!(opts[2].value, None);
        assert_eq!(opts[2].line, 5);
    }

    #[test]
    fn finds_package_symbols_in_expressions() {
        assert_eq!(
            package_symbols_in("depends on BR2_PACKAGE_A && !BR2_PACKAGE_HOST_B # BR2_USE_MMU"),
            vec!["BR2_PACKAGE_A", "BR2_PACKAGE_HOST_B"]
        );
    }
}
