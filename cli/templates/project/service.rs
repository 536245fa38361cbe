//! `@service@`.

use basidia::prelude::*;

/// The @service@ service.
#[service]
pub struct @type_name@;

#[service(name = "@service@")]
impl @type_name@ {
@body@}
