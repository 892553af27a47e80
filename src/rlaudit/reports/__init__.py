"""Reports: the :class:`~rlaudit.reports.audit.Audit` data model, ``audit.json``, and its renderings."""

from rlaudit.reports.audit import AUDIT_FILENAME, Audit, run_audit, verdict

__all__ = ["Audit", "AUDIT_FILENAME", "run_audit", "verdict"]
