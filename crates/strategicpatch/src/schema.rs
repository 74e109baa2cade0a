//! [`TagOnlySchema`]: a [`PatchSchema`] built from the patch tag table plus explicitly declared
//! type edges. For tests, and for callers that know a handful of paths but have no OpenAPI graph.

use std::collections::HashMap;

use crate::{FieldInfo, PatchSchema, PatchTag};

/// Answers from [`patch_tags`](crate::patch_tags) (or another tag table) and from the
/// field → child-definition edges registered with [`TagOnlySchema::child`] and
/// [`TagOnlySchema::map_of`]. Fields it was not told about have no tag and no child, so the
/// engine merges their maps and replaces their lists, like any untyped JSON.
#[derive(Clone, Debug, Default)]
pub struct TagOnlySchema {
    tags: HashMap<(&'static str, &'static str), PatchTag>,
    children: HashMap<(String, String), (Option<String>, bool)>,
}

impl TagOnlySchema {
    /// A schema that knows `tags` and no type edges yet.
    pub fn new(tags: &[PatchTag]) -> Self {
        TagOnlySchema {
            tags: tags
                .iter()
                .map(|tag| ((tag.definition, tag.field), *tag))
                .collect(),
            children: HashMap::new(),
        }
    }

    /// Declares that `definition.field` holds a `child` object (or a list of them).
    pub fn child(mut self, definition: &str, field: &str, child: &str) -> Self {
        self.children.insert(
            (definition.to_owned(), field.to_owned()),
            (Some(child.to_owned()), false),
        );
        self
    }

    /// Declares that `definition.field` is a `map[string]X`, with `X` the `child` definition
    /// when it is an object type.
    pub fn map_of(mut self, definition: &str, field: &str, child: Option<&str>) -> Self {
        self.children.insert(
            (definition.to_owned(), field.to_owned()),
            (child.map(str::to_owned), true),
        );
        self
    }
}

impl PatchSchema for TagOnlySchema {
    fn field(&self, definition: &str, field: &str) -> FieldInfo {
        let tag = self.tags.get(&(definition, field));
        let (child, is_map) = self
            .children
            .get(&(definition.to_owned(), field.to_owned()))
            .cloned()
            .unwrap_or((None, false));
        FieldInfo {
            strategy: tag.map(|tag| tag.strategy),
            merge_key: tag.and_then(|tag| tag.merge_key),
            child,
            is_map,
        }
    }
}
