"""Configuration: the validating reader of xpcargo's files (``schema``) and a target's settings (``targets``)."""
