"""The customer's side: ``tether-client``. It decides; the broker only asks."""
