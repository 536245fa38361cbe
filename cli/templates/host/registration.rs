    basidia_runtime::Registration {
        crate_name: @crate_name@,
        register: ::@lib_name@::@register@,
    },
