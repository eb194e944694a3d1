//! Named schemas shared by the endpoints, with PVE's patterns, formats and texts
//! (pve-common `JSONSchema.pm` formats; spec/pve-api.md §1.1).

use crate::download::Algorithm;
use crate::pve::content::CONTENT_TYPES;
use crate::pve::ids::{
    NODE_NAME_PATTERN, STORAGE_ID_PATTERN, is_valid_node_name, storage_id_error,
};
use crate::schema::{Format, Pattern, Property, Schema, Shape, StringSchema};
use crate::tasks::UPID_RE;

pub static NODE_FORMAT: Format = Format {
    name: "pve-node",
    verify: |v| {
        if is_valid_node_name(v) {
            Ok(())
        } else {
            Err("value does not look like a valid node name\n".into())
        }
    },
    shape: Shape::Pattern(NODE_NAME_PATTERN),
};

pub static STORAGE_ID_FORMAT: Format = Format {
    name: "pve-storage-id",
    verify: |v| match storage_id_error(v) {
        Some(e) => Err(format!("{e}\n")),
        None => Ok(()),
    },
    shape: Shape::Pattern(STORAGE_ID_PATTERN),
};

pub static CONTENT_FORMAT: Format = Format {
    name: "pve-storage-content",
    verify: |v| {
        if CONTENT_TYPES.contains(&v) {
            Ok(())
        } else {
            Err(format!("invalid content type '{v}'\n"))
        }
    },
    shape: Shape::Enum(CONTENT_TYPES),
};

/// pve-common's `pve-node-list`, plus isolib's `all` for every node of the cluster.
pub static NODE_LIST_FORMAT: Format = Format {
    name: "pve-node-list",
    verify: |v| {
        let nodes = crate::pve::perl::split_list(v);
        if v == "all" || (!nodes.is_empty() && nodes.iter().all(|n| is_valid_node_name(n))) {
            Ok(())
        } else {
            Err("value does not look like a valid node list\n".into())
        }
    },
    shape: Shape::Pattern(
        r"^(all|[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?([,; ]+[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)*)$",
    ),
};
pub static NODE_LIST: Schema = Schema::String(StringSchema::format(&NODE_LIST_FORMAT));
static SHA256_RE: Pattern = Pattern::new("^[0-9a-f]{64}$");
pub static SHA256: Schema = Schema::String(StringSchema {
    pattern: Some(&SHA256_RE),
    ..StringSchema::new()
});

pub static URL_RE: Pattern = Pattern::new("^https?://.*$");

pub static NODE: Schema = Schema::String(StringSchema::format(&NODE_FORMAT));
pub static STORAGE_ID: Schema = Schema::String(StringSchema::format(&STORAGE_ID_FORMAT));
pub static CONTENT_TYPE: Schema = Schema::String(StringSchema::format(&CONTENT_FORMAT));
/// A UPID: any string to the schema, as in PVE, whose task methods die with their own text
/// on one that does not parse.
pub static UPID: Schema = Schema::String(StringSchema {
    handler_checks: Shape::Pattern(UPID_RE.source),
    ..StringSchema::new()
});
pub static URL: Schema = Schema::String(StringSchema {
    pattern: Some(&URL_RE),
    ..StringSchema::new()
});
pub static VERIFY_CERTIFICATES: Schema = Schema::Boolean {
    default: Some(true),
};
pub static CHECKSUM_ALGORITHM: Schema = Schema::String(StringSchema {
    enumeration: Some(Algorithm::NAMES),
    ..StringSchema::new()
});
pub static STRING: Schema = Schema::String(StringSchema::new());
static ITEM_NAME_RE: Pattern = Pattern::new(r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]*$");
/// The name of something isolib keeps (a track, a boot config, a host): a file name too.
pub static ITEM_NAME: Schema = Schema::String(StringSchema {
    pattern: Some(&ITEM_NAME_RE),
    max_length: Some(64),
    ..StringSchema::new()
});
/// What download-url and upload put into a storage.
pub static DOWNLOAD_CONTENT_TYPE: Schema = Schema::String(StringSchema {
    format: Some(&CONTENT_FORMAT),
    enumeration: Some(crate::pve::content::DOWNLOAD_CONTENT),
    ..StringSchema::new()
});
/// download-url's and upload's `filename`, normalized afterwards.
pub static CONTENT_FILENAME: Schema = Schema::String(StringSchema {
    max_length: Some(255),
    ..StringSchema::new()
});
pub static BOOLEAN: Schema = Schema::Boolean { default: None };
pub static INTEGER: Schema = Schema::integer(None, None);
pub static START: Schema = Schema::integer(Some(0), Some(0));
pub static COUNT: Schema = Schema::integer(Some(0), None);
pub static LIMIT: Schema = Schema::integer(Some(0), Some(50));

const fn prop(name: &'static str, description: &'static str, schema: &'static Schema) -> Property {
    Property {
        name,
        description,
        optional: false,
        schema,
        requires: None,
    }
}

const fn opt(name: &'static str, description: &'static str, schema: &'static Schema) -> Property {
    Property {
        name,
        description,
        optional: true,
        schema,
        requires: None,
    }
}

/// A required parameter, named by [`params!`].
pub const fn required(description: &'static str, schema: &'static Schema) -> Property {
    prop("", description, schema)
}

/// An optional parameter, named by [`params!`].
pub const fn optional(description: &'static str, schema: &'static Schema) -> Property {
    opt("", description, schema)
}

pub const NODE_PROP: Property = prop("node", "The cluster node name.", &NODE);
pub const STORAGE_PROP: Property = prop("storage", "The storage identifier.", &STORAGE_ID);

/// download-url's and upload's parameters of the file they create.
pub const DOWNLOAD_CONTENT_PROP: Property = required("Content type.", &DOWNLOAD_CONTENT_TYPE);
pub const FILENAME_PROP: Property = required(
    "The name of the file to create. Caution: This will be normalized!",
    &CONTENT_FILENAME,
);
pub const CHECKSUM_PROP: Property = Property {
    requires: Some("checksum-algorithm"),
    ..optional("The expected checksum of the file.", &STRING)
};
pub const CHECKSUM_ALGORITHM_PROP: Property = Property {
    requires: Some("checksum"),
    ..optional(
        "The algorithm to calculate the checksum of the file.",
        &CHECKSUM_ALGORITHM,
    )
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_texts() {
        assert_eq!((NODE_FORMAT.verify)("a-b"), Ok(()));
        assert_eq!(
            (NODE_FORMAT.verify)("-ab"),
            Err("value does not look like a valid node name\n".to_string())
        );
        assert_eq!(
            (STORAGE_ID_FORMAT.verify)("a"),
            Err("storage ID 'a' cannot be shorter than 2 characters\n".to_string())
        );
        assert_eq!(
            (STORAGE_ID_FORMAT.verify)("a$b"),
            Err("storage ID 'a$b' contains illegal characters\n".to_string())
        );
        assert_eq!(
            (CONTENT_FORMAT.verify)("foo"),
            Err("invalid content type 'foo'\n".to_string())
        );
        assert!(URL_RE.compiles());
    }
}
