"""mecsim."""
