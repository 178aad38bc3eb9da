//! Partition dependencies: "this job, run for `ds`, needs partition `ds + offset` of table T".
//!
//! AB writes them as Airflow sensor specs (`data.purchases/ds={{ ds }}`, with a lag
//! `{{ macros.ds_add(ds, -1) }}`, sometimes sub-partitions `/hr=00:00`); ZL writes the same spec
//! format into `customJson.airflowDependencies`. Both parse into [`PartitionDependency`].

use serde::Serialize;

use crate::date::PartitionDate;

/// One partition a job waits for, relative to the `ds` it runs for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PartitionDependency {
    pub table: String,
    pub partition_column: String,
    /// The partition waited for is `ds + offset_days` (a lag is negative).
    pub offset_days: i64,
    /// Other partition columns that must exist too (`hr=00:00`), in the order written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sub_partitions: Vec<(String, String)>,
    /// As written by Chronon; Chronon's scheduler does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<PartitionDate>,
    /// When `end <= ds`, the partition is not waited for (the source has ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<PartitionDate>,
}

impl PartitionDependency {
    /// Whether a run for `ds` must wait for this partition (AB's `SensorWithEndDate` rule).
    pub fn applies_to(&self, ds: PartitionDate) -> bool {
        match self.end {
            Some(end) => ds < end,
            None => true,
        }
    }

    /// The partition to wait for when running for `ds`.
    pub fn partition_for(&self, ds: PartitionDate) -> PartitionDate {
        ds.add_days(self.offset_days)
    }

    /// Two dependencies on the same partition (table, column, offset, sub-partitions) are one
    /// sensor; this is the part of the identity that decides it.
    pub fn sensor_key(&self) -> (&str, &str, i64, &[(String, String)]) {
        (
            &self.table,
            &self.partition_column,
            self.offset_days,
            &self.sub_partitions,
        )
    }
}

/// Parses a sensor spec: `table/col={{ ds }}[/k=v...]`, the date partition anywhere after the table.
pub fn parse_spec(spec: &str) -> Result<PartitionDependency, String> {
    let mut segments = spec.split('/');
    let table = segments.next().unwrap_or_default().trim();
    if table.is_empty() {
        return Err("the spec has no table before '/'".to_owned());
    }
    let mut date_partition: Option<(String, i64)> = None;
    let mut sub_partitions = Vec::new();
    for seg in segments {
        let Some((key, value)) = seg.split_once('=') else {
            return Err(format!("segment {seg:?} is not key=value"));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(format!("segment {seg:?} has an empty key"));
        }
        if value.contains("{{") {
            if date_partition.is_some() {
                return Err("more than one segment holds a {{ ds }} macro".to_owned());
            }
            date_partition = Some((key.to_owned(), parse_ds_macro(value)?));
        } else {
            sub_partitions.push((key.to_owned(), value.to_owned()));
        }
    }
    let Some((partition_column, offset_days)) = date_partition else {
        return Err(
            "no segment holds the date partition ({{ ds }} or {{ macros.ds_add(ds, N) }})"
                .to_owned(),
        );
    };
    Ok(PartitionDependency {
        table: table.to_owned(),
        partition_column,
        offset_days,
        sub_partitions,
        start: None,
        end: None,
    })
}

/// `{{ ds }}` -> 0; `{{ macros.ds_add(ds, -3) }}` -> -3. Whitespace inside the braces is free.
fn parse_ds_macro(value: &str) -> Result<i64, String> {
    let inner = value
        .strip_prefix("{{")
        .and_then(|v| v.strip_suffix("}}"))
        .ok_or_else(|| format!("{value:?} is not a single {{{{ ... }}}} macro"))?;
    let compact: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
    if compact == "ds" {
        return Ok(0);
    }
    let args = compact
        .strip_prefix("macros.ds_add(ds,")
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| format!("unsupported macro {value:?}: expected {{{{ ds }}}} or {{{{ macros.ds_add(ds, N) }}}}"))?;
    let days: i64 = args
        .parse()
        .map_err(|_| format!("ds_add offset {args:?} in {value:?} is not an integer"))?;
    // Offsets beyond a few centuries are typos; rejecting them keeps date math total.
    if days.abs() > 100_000 {
        return Err(format!("ds_add offset {days} in {value:?} is out of range"));
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ds_spec() {
        let d = parse_spec("data.purchases/ds={{ ds }}").unwrap();
        assert_eq!(
            (d.table.as_str(), d.partition_column.as_str(), d.offset_days),
            ("data.purchases", "ds", 0)
        );
        assert!(d.sub_partitions.is_empty());
    }

    #[test]
    fn lag_macro_and_sub_partitions_after_the_date() {
        let d =
            parse_spec("sample_namespace.sample_table/ds={{ macros.ds_add(ds, -1) }}/_HR=23:00")
                .unwrap();
        assert_eq!(d.offset_days, -1);
        assert_eq!(
            d.sub_partitions,
            vec![("_HR".to_owned(), "23:00".to_owned())]
        );
    }

    #[test]
    fn sub_partitions_before_the_date() {
        let d = parse_spec("sample_table.sample_entity_mutations/hr=00:00/_test_column_sample={{ macros.ds_add(ds, 0) }}")
            .unwrap();
        assert_eq!(d.partition_column, "_test_column_sample");
        assert_eq!(
            d.sub_partitions,
            vec![("hr".to_owned(), "00:00".to_owned())]
        );
    }

    #[test]
    fn positive_offsets_and_compact_spacing() {
        assert_eq!(
            parse_spec("t/ds={{macros.ds_add(ds,1)}}")
                .unwrap()
                .offset_days,
            1
        );
        assert_eq!(parse_spec("t/ds={{ds}}").unwrap().offset_days, 0);
    }

    #[test]
    fn malformed_specs_say_why() {
        assert!(parse_spec("/ds={{ ds }}").unwrap_err().contains("no table"));
        assert!(
            parse_spec("t/ds=2023-01-01")
                .unwrap_err()
                .contains("no segment holds the date")
        );
        assert!(
            parse_spec("t/ds={{ yesterday_ds }}")
                .unwrap_err()
                .contains("unsupported macro")
        );
        assert!(
            parse_spec("t/ds={{ macros.ds_add(ds, x) }}")
                .unwrap_err()
                .contains("not an integer")
        );
        assert!(
            parse_spec("t/ds={{ macros.ds_add(ds, 99999999999) }}")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(parse_spec("t/hr").unwrap_err().contains("not key=value"));
    }

    #[test]
    fn end_short_circuits_on_and_after_the_end_date() {
        let mut d = parse_spec("t/ds={{ ds }}").unwrap();
        let ds = PartitionDate::parse("2021-04-09").unwrap();
        assert!(d.applies_to(ds));
        d.end = Some(ds);
        assert!(!d.applies_to(ds));
        assert!(d.applies_to(ds.add_days(-1)));
    }
}
