"""The configuration examples of the product documentation, verbatim, for the tests that
load them (the documents users copy from)."""

# The example config.json of the client service guide.
GUIDE_EXAMPLE = r"""{
  "server_url": "https://wats.yourcompany.com",
  "api_token": "...",
  "station_name": "ICT-STATION-01",
  "station_location": "Production Line A",
  
  "queue": {
    "watch_folders": ["C:\\TestReports"],
    "upload_interval": 10,
    "retry_attempts": 3,
    "retry_delay": 60
  },
  
  "converters": {
    "enabled": ["WATSStandardXMLConverter", "TeradyneICTConverter"],
    "auto_detect": true
  },
  
  "logging": {
    "level": "INFO",
    "max_size_mb": 10,
    "backup_count": 5
  }
}
"""  # noqa: W293 - the blank lines of the guide carry two spaces; kept verbatim

# The converter configuration of the client architecture document.
ARCHITECTURE_EXAMPLE = r"""{
  "converters": [{
    "name": "CSV Converter",
    "module_path": "converters.csv_converter.CSVConverter",
    "watch_folder": "C:\\TestData\\Incoming",
    "done_folder": "C:\\TestData\\Done",
    "error_folder": "C:\\TestData\\Error",
    "file_patterns": ["*.csv"],
    "post_action": "move",
    "enabled": true,
    "arguments": {
      "delimiter": ",",
      "encoding": "utf-8"
    }
  }]
}
"""

# The configuration of the client service package README, verbatim.
PACKAGE_EXAMPLE = r"""{
    "instance_name": "Production Station 1",
    "service_address": "https://your-server.wats.com",
    "api_token": "base64_encoded_token",
    "converter_path": "./converters",
    "queue_path": "./queue",
    "watch_paths": ["./test_data"],
    "auto_submit": true,
    "retry_failed": true
}
"""
