"""sharedapplier: RIOS-compatible raster block processing."""
