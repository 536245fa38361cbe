        basidia_cli::host::Registration {
            crate_name: @crate_name@,
            register: ::@lib_name@::@register@,
        },
