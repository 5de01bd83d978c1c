"""The customer-lifetime-value use case: cleaning, features, labels, bundled sample data."""
