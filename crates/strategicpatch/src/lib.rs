//! strategicpatch
