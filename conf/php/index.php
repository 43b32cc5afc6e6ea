<?php
// Served through Vigil's fastcgi_pass to the php-fpm pool scripts/run-demo starts (conf/vigil.conf, /php/).
header("Content-Type: text/plain");
echo "Hello from PHP ", PHP_VERSION, " via ", $_SERVER["SERVER_SOFTWARE"], "\n";
echo "script ", $_SERVER["SCRIPT_NAME"], ", path info \"", $_SERVER["PATH_INFO"] ?? "", "\", query \"", $_SERVER["QUERY_STRING"], "\"\n";
