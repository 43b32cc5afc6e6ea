/// The directives of nginx 1.22 (core, events, http and the http modules of its source tree) that Vigil does not
/// implement: `-t` refuses them as "not supported by vigil" rather than as unknown, so that an operator knows the
/// name is nginx's and the feature is missing. Generated from nginx's ngx_command_t tables, less Vigil's own.
enum UnsupportedDirectives {
    static let names: Set<String> = [
        // epoll
        "epoll_events", "worker_aio_requests",
        // event_openssl
        "ssl_engine",
        // http_addition_filter
        "add_after_body", "add_before_body", "addition_types",
        // http_browser
        "ancient_browser", "ancient_browser_value", "modern_browser", "modern_browser_value",
        // http_core
        "disable_symlinks", "log_subrequest", "post_action", "read_ahead",
        "recursive_error_pages", "send_lowat", "subrequest_output_buffer_size",
        // http_dav
        "create_full_put_path", "dav_access", "dav_methods", "min_delete_depth",
        // http_degradation
        "degradation", "degrade",
        // http_empty_gif
        "empty_gif",
        // http_fastcgi
        "fastcgi_ignore_client_abort", "fastcgi_limit_rate", "fastcgi_send_lowat",
        "fastcgi_socket_keepalive",
        // http_flv
        "flv",
        // http_geoip
        "geoip_city", "geoip_country", "geoip_org", "geoip_proxy", "geoip_proxy_recursive",
        // http_grpc
        "grpc_bind", "grpc_buffer_size", "grpc_connect_timeout", "grpc_hide_header", "grpc_ignore_headers",
        "grpc_intercept_errors", "grpc_next_upstream", "grpc_next_upstream_timeout", "grpc_next_upstream_tries",
        "grpc_pass", "grpc_pass_header", "grpc_read_timeout", "grpc_send_timeout", "grpc_set_header",
        "grpc_socket_keepalive", "grpc_ssl_certificate", "grpc_ssl_certificate_key", "grpc_ssl_ciphers",
        "grpc_ssl_conf_command", "grpc_ssl_crl", "grpc_ssl_name", "grpc_ssl_password_file", "grpc_ssl_protocols",
        "grpc_ssl_server_name", "grpc_ssl_session_reuse", "grpc_ssl_trusted_certificate", "grpc_ssl_verify",
        "grpc_ssl_verify_depth",
        // http_gunzip_filter
        "gunzip", "gunzip_buffers",
        // http_gzip_filter
        "gzip_hash", "gzip_no_buffer", "gzip_window", "postpone_gzipping",
        // http_image_filter
        "image_filter", "image_filter_buffer", "image_filter_interlace", "image_filter_jpeg_quality",
        "image_filter_sharpen", "image_filter_transparency", "image_filter_webp_quality",
        // http_memcached
        "memcached_bind", "memcached_buffer_size", "memcached_connect_timeout", "memcached_gzip_flag",
        "memcached_next_upstream", "memcached_next_upstream_timeout", "memcached_next_upstream_tries",
        "memcached_pass", "memcached_read_timeout", "memcached_send_timeout", "memcached_socket_keepalive",
        // http_mirror
        "mirror", "mirror_request_body",
        // http_mp4
        "mp4", "mp4_buffer_size", "mp4_max_buffer_size", "mp4_start_key_frame",
        // http_perl
        "perl", "perl_modules", "perl_require", "perl_set",
        // http_proxy
        "proxy_headers_hash_bucket_size", "proxy_headers_hash_max_size", "proxy_ignore_client_abort",
        "proxy_limit_rate", "proxy_send_lowat", "proxy_socket_keepalive",
        // http_random_index
        "random_index",
        // http_referer
        "referer_hash_bucket_size", "referer_hash_max_size", "valid_referers",
        // http_scgi
        "scgi_ignore_client_abort", "scgi_limit_rate", "scgi_socket_keepalive",
        // http_secure_link
        "secure_link", "secure_link_md5", "secure_link_secret",
        // http_slice_filter
        "slice",
        // http_ssi_filter
        "ssi", "ssi_ignore_recycled_buffers", "ssi_last_modified", "ssi_min_file_chunk", "ssi_silent_errors",
        "ssi_types", "ssi_value_length",
        // http_sub_filter
        "sub_filter", "sub_filter_last_modified", "sub_filter_once", "sub_filter_types",
        // http_userid_filter
        "userid", "userid_domain", "userid_expires", "userid_flags", "userid_mark", "userid_name", "userid_p3p",
        "userid_path", "userid_service",
        // http_uwsgi
        "uwsgi_ignore_client_abort", "uwsgi_limit_rate",
        "uwsgi_socket_keepalive", "uwsgi_string",
        // http_xslt_filter
        "xml_entities", "xslt_last_modified", "xslt_param", "xslt_string_param", "xslt_stylesheet", "xslt_types",
        // thread_pool
        "thread_pool",
        // core
        "debug_points", "worker_cpu_affinity",
        // the stream and mail modules' blocks
        "mail", "stream",
    ]
}
