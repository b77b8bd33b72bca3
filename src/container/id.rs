//! Container ids (64 hex digits, shown as their first 12, as docker does) and states.

use serde::{Deserialize, Serialize};

/// A container's id: 64 lowercase hex digits, also the name of its directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl ContainerId {
    /// A fresh random id.
    pub fn random() -> std::io::Result<ContainerId> {
        let mut b = [0u8; 32];
        crate::sys::process::random_bytes(&mut b)?;
        Ok(ContainerId(b.iter().map(|x| format!("{x:02x}")).collect()))
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit form `ps` shows.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl TryFrom<String> for ContainerId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(ContainerId(s))
        } else {
            Err(format!("{s:?} is not a container id (64 hex digits)"))
        }
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, its process not started yet.
    Created,
    /// Its init runs.
    Running,
    /// Its init ended (or its launcher was killed).
    Exited,
}

impl Status {
    /// docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_digits() {
        let id = ContainerId::random().unwrap();
        assert_eq!(id.as_str().len(), 64);
        assert_eq!(id.short(), &id.as_str()[..12]);
        assert!(ContainerId::try_from(id.to_string()).is_ok());
        assert!(ContainerId::try_from("../etc".to_string()).is_err());
        assert!(ContainerId::try_from("A".repeat(64)).is_err());
        let j = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ContainerId>(&j).unwrap(), id);
        assert!(serde_json::from_str::<ContainerId>("\"x\"").is_err());
        assert_eq!(
            serde_json::to_string(&Status::Exited).unwrap(),
            "\"exited\""
        );
    }
}
