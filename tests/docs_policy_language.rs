//! docs/policy-language.md lists every selector value the policy checker accepts: the
//! table cannot drift from the domain enums.
use slawatch::core::model::{Category, Channel, Tier, Urgency};
use std::collections::BTreeSet;

fn documented(field: &str) -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/policy-language.md"
    ))
    .unwrap();
    let row = doc
        .lines()
        .find(|l| l.starts_with(&format!("| `{field}` |")))
        .unwrap_or_else(|| panic!("no row for `{field}` in docs/policy-language.md"));
    let values = row.split('|').nth(2).unwrap();
    values
        .split(',')
        .map(|v| v.trim().trim_matches('`').to_string())
        .collect()
}

fn names(all: impl Iterator<Item = &'static str>) -> BTreeSet<String> {
    all.map(str::to_string).collect()
}

#[test]
fn the_selector_table_lists_exactly_the_accepted_values() {
    let mut channel = names(Channel::ALL.iter().map(|c| c.as_str()));
    channel.insert("unspecified".into());
    assert_eq!(documented("channel"), channel);
    let mut category = names(Category::ALL.iter().map(|c| c.as_str()));
    category.insert("unspecified".into());
    assert_eq!(documented("category"), category);
    assert_eq!(
        documented("urgency"),
        names(Urgency::ALL.iter().map(|c| c.as_str()))
    );
    assert_eq!(
        documented("tier"),
        names(Tier::ALL.iter().map(|c| c.as_str()))
    );
}

#[test]
fn every_documented_selector_value_is_accepted_by_the_checker() {
    for (field, values) in [
        ("channel", documented("channel")),
        ("category", documented("category")),
        ("urgency", documented("urgency")),
        ("tier", documented("tier")),
    ] {
        let list: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
        let policy = format!(
            "[[policy]]\nid = \"p\"\n{field} = [{}]\n[[policy.clock]]\nid = \"c\"\nrule = \"R1\"\nstart = \"opened\"\nstop = \"agent_reply\"\ntarget = \"1m\"\n[[policy]]\nid = \"rest\"\n",
            list.join(", ")
        );
        let (set, diags) = slawatch::core::policy::parse::check_policy(&policy, "doc.toml");
        let errors: Vec<String> = diags
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty() && set.is_some(), "{field}: {errors:?}");
    }
}
