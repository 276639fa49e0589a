DROP TABLE saml_service_providers;
