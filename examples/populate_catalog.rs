//! Bench helper: adds COUNT objects named CONTAINER/o<index> to the repository at REPO in one
//! catalog transaction, through arch's own catalog code (`repo::db::Db::put_object`), each a
//! new object (fresh uuid) sharing the data of the existing object TEMPLATE. Used by
//! `bench/run --suite catalog` to populate 100 .. 1M objects without 1M CLI runs.
//!
//! Usage: populate_catalog REPO TEMPLATE CONTAINER COUNT

use arch::repo::Repository;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, repo, template, container, count] = args.as_slice() else {
        return Err("usage: populate_catalog REPO TEMPLATE CONTAINER COUNT".into());
    };
    let count: u64 = count.parse()?;
    let repo = Repository::open(std::path::Path::new(repo))?;
    let db = repo.catalog()?;
    let base = db
        .object(template)?
        .ok_or_else(|| format!("template object '{template}' not found"))?;
    db.write(|db| {
        for i in 0..count {
            let mut rec = base.clone();
            rec.uuid = uuid::Uuid::new_v4().to_string();
            rec.image = None;
            db.put_object(&format!("{container}/o{i:07}"), &rec)?;
        }
        Ok(())
    })?;
    Ok(())
}
