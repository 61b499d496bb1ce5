"""One instance's configuration: config.json, the PYWATS_* environment, the typed settings.

`schema` owns the keys, `document` the file, `validation` the settings built from both (with
`environment` and `legacy`), `provisioning` a new file, `secrets` encryption at rest.
"""
