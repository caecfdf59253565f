//! `Labels`: a series' label set, sorted by name, with the operations PromQL needs
//! (keep `by`, drop `without`, match `on` / `ignoring`).

/// Labels sorted by name; a label with an empty value does not exist (as in Prometheus).
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Labels(Vec<(String, String)>);

/// The metric name label.
pub const NAME: &str = "__name__";

impl Labels {
    pub fn new() -> Labels {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order; empty values are left out and a
    /// repeated name keeps its last value.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Labels {
        let mut labels = Labels::new();
        for (k, v) in pairs {
            labels.insert(k.into(), v.into());
        }
        labels
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Sets a label; an empty value removes it.
    pub fn insert(&mut self, name: String, value: String) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Only the named labels (`by`, `on`).
    pub fn keep(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        )
    }

    /// Every label but the named ones (`without`, `ignoring`).
    pub fn drop(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        )
    }

    /// Without the metric name: what functions and arithmetic return.
    pub fn without_name(&self) -> Labels {
        Labels(self.0.iter().filter(|(k, _)| k != NAME).cloned().collect())
    }

    /// A stable 64-bit hash of the label set (FNV-1a over names and values), used as
    /// the alert fingerprint.
    pub fn fingerprint(&self) -> u64 {
        let mut bytes = Vec::with_capacity(64);
        for (k, v) in &self.0 {
            bytes.extend_from_slice(k.as_bytes());
            bytes.push(0xff);
            bytes.extend_from_slice(v.as_bytes());
            bytes.push(0xff);
        }
        crate::sources::file_tail::fnv1a(&bytes)
    }
}

impl std::fmt::Display for Labels {
    /// `{path="/api/cart", severity="page"}`, the way Prometheus prints a label set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_without_empty_values() {
        let labels = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("a", "3")]);
        assert_eq!(labels.to_string(), r#"{a="3", b="2"}"#);
        assert_eq!(labels.get("a"), Some("3"));
        assert_eq!(labels.get("c"), None);
        assert_eq!(labels.keep(&["b".into()]).to_string(), r#"{b="2"}"#);
        assert_eq!(labels.drop(&["b".into()]).to_string(), r#"{a="3"}"#);
        assert_ne!(
            labels.fingerprint(),
            labels.drop(&["b".into()]).fingerprint()
        );
    }
}
