//! Dependency relations of the Packages index (`Depends`, `Pre-Depends`, `Provides`, `Breaks`,
//! `Conflicts`): alternatives, version constraints and their operators.

use debversion::Version;

/// One alternative in a dependency: `name (op version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub constraint: Option<(Op, Version)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    pub fn holds(self, have: &Version, want: &Version) -> bool {
        use std::cmp::Ordering::*;
        let c = have.cmp(want);
        match self {
            Op::Lt => c == Less,
            Op::Le => c != Greater,
            Op::Eq => c == Equal,
            Op::Ge => c != Less,
            Op::Gt => c == Greater,
        }
    }
}

impl std::fmt::Display for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.constraint {
            None => write!(f, "{}", self.name),
            Some((op, v)) => {
                let o = match op {
                    Op::Lt => "<<",
                    Op::Le => "<=",
                    Op::Eq => "=",
                    Op::Ge => ">=",
                    Op::Gt => ">>",
                };
                write!(f, "{} ({o} {v})", self.name)
            }
        }
    }
}

/// Parse a Depends-style field: `a (>= 1), b | c:any, d [amd64]`.
pub fn parse_relations(field: &str) -> Result<Vec<Vec<Dep>>, String> {
    let mut out = Vec::new();
    for group in field.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut alts = Vec::new();
        for alt in group.split('|') {
            let alt = alt.trim();
            // name [(constraint)] [arch restriction] [<build profile>]: the restrictions are
            // not used in binary indexes and are dropped.
            let name_end = alt.find(['(', '[', '<', ' ']).unwrap_or(alt.len());
            let name_part = &alt[..name_end];
            let cons = match (alt.find('('), alt.find(')')) {
                (Some(i), Some(j)) if j > i => Some(alt[i + 1..j].trim()),
                (Some(_), _) => return Err(format!("unclosed parenthesis in {alt:?}")),
                _ => None,
            };
            let name = name_part.trim().split(':').next().unwrap_or("").to_string();
            if name.is_empty() {
                return Err(format!("empty package name in {group:?}"));
            }
            let constraint = match cons {
                None => None,
                Some(c) => {
                    let (op, rest) = if let Some(r) = c.strip_prefix(">=") {
                        (Op::Ge, r)
                    } else if let Some(r) = c.strip_prefix("<=") {
                        (Op::Le, r)
                    } else if let Some(r) = c.strip_prefix(">>") {
                        (Op::Gt, r)
                    } else if let Some(r) = c.strip_prefix("<<") {
                        (Op::Lt, r)
                    } else if let Some(r) = c.strip_prefix('=') {
                        (Op::Eq, r)
                    } else if let Some(r) = c.strip_prefix('>') {
                        (Op::Ge, r) // obsolete spelling of >=
                    } else if let Some(r) = c.strip_prefix('<') {
                        (Op::Le, r)
                    } else {
                        return Err(format!("bad version constraint {c:?}"));
                    };
                    let v: Version = rest.trim().parse().map_err(|e| format!("bad version {rest:?}: {e:?}"))?;
                    Some((op, v))
                }
            };
            alts.push(Dep { name, constraint });
        }
        out.push(alts);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_relations() {
        let r = parse_relations("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any, foo [amd64], bar (<< 2.0) <!nocheck>").unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[4][0].to_string(), "bar (<< 2.0)");
        assert_eq!(r[1].len(), 2);
        assert_eq!(r[1][1].name, "debconf-2.0");
        assert_eq!(r[2][0].name, "python3");
        assert_eq!(r[3][0].name, "foo");
        assert_eq!(r[0][0].to_string(), "libc6 (>= 2.34)");
        let v: Version = "2.36-9".parse().unwrap();
        assert!(Op::Ge.holds(&v, &"2.34".parse().unwrap()));
        assert!(!Op::Lt.holds(&v, &"2.34".parse().unwrap()));
    }
}
