//! fsck's look at `packs/`: a pack whose index is damaged holds blocks nobody can find (they
//! read as missing), so it is a problem naming the pack and the reason.

use super::fsck::Problem;
use crate::error::Result;
use crate::repo::Repository;

/// One `corrupt_pack` problem per pack of the local store whose index is damaged.
pub fn damaged_packs(repo: &Repository) -> Result<Vec<Problem>> {
    let Some(packs) = repo.backend().as_local().and_then(|l| l.packs()) else {
        return Ok(Vec::new());
    };
    Ok(packs
        .damaged()?
        .into_iter()
        .map(|(path, why)| Problem {
            kind: "corrupt_pack".into(),
            subject: path.display().to_string(),
            resources: vec![],
            message: format!(
                "pack {}: {why}; its blocks cannot be found (referenced ones are reported \
                 missing); gc leaves it alone",
                path.display()
            ),
        })
        .collect())
}
