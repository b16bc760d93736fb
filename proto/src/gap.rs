//! [`Gap`]: events a reader had not read were deleted by retention (the data of a stream's
//! `event: gap`, and each entry of a pull page's `gaps`).

use serde::{Deserialize, Serialize};

/// Events `missed_from..resume_at` of `namespace` were lost unread (deleted by retention, or
/// lost to damage that a repair salvaged around); reading resumed at `resume_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The namespace.
    pub namespace: String,
    /// First sequence missed.
    pub missed_from: u64,
    /// Sequence reading resumed at.
    pub resume_at: u64,
    /// Why they are gone. A broker that sends no reason is an older one, whose only gaps
    /// were retention's.
    #[serde(default)]
    pub reason: GapReason,
}

/// Why the events of a [`Gap`] are gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GapReason {
    /// Retention deleted them (by age, size or count).
    #[default]
    Retention,
    /// Their records were damaged on disk and a repair could not salvage them.
    Damaged,
}

impl GapReason {
    /// The reason as the wire spells it: `retention` or `damaged`.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Retention => "retention",
            GapReason::Damaged => "damaged",
        }
    }
}

impl std::fmt::Display for GapReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_the_gap_json() {
        let g = super::Gap {
            namespace: "user".into(),
            missed_from: 3,
            resume_at: 9,
            reason: super::GapReason::Damaged,
        };
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(
            json,
            r#"{"namespace":"user","missed_from":3,"resume_at":9,"reason":"damaged"}"#
        );
        assert_eq!(serde_json::from_str::<super::Gap>(&json).unwrap(), g);
    }

    #[test]
    fn a_gap_without_a_reason_is_retention() {
        let old = r#"{"namespace":"user","missed_from":3,"resume_at":9}"#;
        let g: super::Gap = serde_json::from_str(old).unwrap();
        assert_eq!(g.reason, super::GapReason::Retention);
    }
}
