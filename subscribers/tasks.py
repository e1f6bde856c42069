"""Run subscriber work in the background: thin wrappers around actions."""

from celery import shared_task

from subscribers import actions


@shared_task(acks_late=True)
def check_import_task(job_id: int) -> None:
    """Dry-run an uploaded import so staff can review it; safe to run twice."""
    actions.process_import_job(job_id, dry_run=True)


@shared_task(acks_late=True)
def run_import_task(job_id: int) -> None:
    """Apply a confirmed import; safe to run twice (the job's status guards it)."""
    actions.process_import_job(job_id, dry_run=False)


@shared_task
def purge_import_files_task() -> int:
    """Delete import files past their retention period."""
    return actions.purge_import_files()
