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
                out.push(ConfigOption { symbol: sym.to_string(), value: Some(value.to_string()), line: i + 1 });
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
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|t| t.starts_with("BR2_PACKAGE_") && is_symbol(t)).collect()
}

/// An option of a defconfig that did not come through into a `.config` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub symbol: String,
    /// 1-based line in the defconfig.
    pub line: usize,
    /// What the defconfig says (`None`: `is not set`).
    pub wanted: Option<String>,
    /// What the .config has (`None`: absent or not set).
    pub got: Option<String>,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
        write!(f, "line {}: {} wanted {} got {}", self.line, self.symbol, show(&self.wanted), show(&self.got))
    }
}

/// The options of `defconfig` that `config` (a `.config` made from it) does not carry as
/// written: kconfig silently drops unknown symbols and options whose dependencies are unmet.
/// An `is not set` option is kept if the .config has it unset or absent.
pub fn lost_options(defconfig: &[ConfigOption], config: &[ConfigOption]) -> Vec<Lost> {
    let value_in_config = |sym: &str| config.iter().find(|o| o.symbol == sym).and_then(|o| o.value.clone());
    let mut lost = Vec::new();
    for opt in defconfig {
        let got = value_in_config(&opt.symbol);
        let kept = match &opt.value {
            None => got.is_none() || got.as_deref() == Some("n"),
            Some(v) => got.as_deref() == Some(v.as_str()),
        };
        if !kept {
            lost.push(Lost { symbol: opt.symbol.clone(), line: opt.line, wanted: opt.value.clone(), got });
        }
    }
    lost
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
    fn lost_options_are_the_dropped_and_changed_ones() {
        let def = parse("BR2_A=y\nBR2_B=\"x\"\nBR2_UNKNOWN=y\n# BR2_C is not set\n# BR2_D is not set\n");
        let cfg = parse("BR2_A=y\nBR2_B=\"y\"\n# BR2_C is not set\nBR2_D=y\nBR2_E=y\n");
        let lost = lost_options(&def, &cfg);
        let names: Vec<&str> = lost.iter().map(|l| l.symbol.as_str()).collect();
        assert_eq!(names, ["BR2_B", "BR2_UNKNOWN", "BR2_D"]);
        assert_eq!(lost[1].to_string(), "line 3: BR2_UNKNOWN wanted y got (not set)");
    }

    #[test]
    fn finds_package_symbols_in_expressions() {
        assert_eq!(package_symbols_in("depends on BR2_PACKAGE_A && !BR2_PACKAGE_HOST_B # BR2_USE_MMU"), vec!["BR2_PACKAGE_A", "BR2_PACKAGE_HOST_B"]);
    }
}
