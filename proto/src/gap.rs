//! [`Gap`]: events a reader had not read were deleted by retention (the data of a stream's
//! `event: gap`, and each entry of a pull page's `gaps`).

use serde::{Deserialize, Serialize};

/// Events `missed_from..resume_at` of `namespace` were deleted unread; reading resumed at
/// `resume_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The namespace.
    pub namespace: String,
    /// First sequence missed.
    pub missed_from: u64,
    /// Sequence reading resumed at.
    pub resume_at: u64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_the_gap_json() {
        let g = super::Gap {
            namespace: "user".into(),
            missed_from: 3,
            resume_at: 9,
        };
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(
            json,
            r#"{"namespace":"user","missed_from":3,"resume_at":9}"#
        );
        assert_eq!(serde_json::from_str::<super::Gap>(&json).unwrap(), g);
    }
}
