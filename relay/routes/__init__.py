"""Who may send and where each event goes: the routes file (``config``), its matchers
(``matchers``) and the decisions made with them."""
