"""Event-sourced governance of third-party OAuth 2.0 (3LO) app installs."""
