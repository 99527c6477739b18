"""Storage: tables, migrations, the visibility rule compiled to SQL, and bounded queries."""
