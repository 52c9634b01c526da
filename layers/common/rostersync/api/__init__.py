"""The admin API (REST, API Gateway + Lambda; locally over HTTP): see ``app``."""
