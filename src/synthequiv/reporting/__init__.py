"""Reporting: what a person reads, and what a machine reads.

  report            report.html / report.md / summary.json of a run
  findings          the answer in words: headline, findings, exchange-rate lines
  analysis_report   the "Real vs synthetic" section
  figures           matplotlib figures (PNG + SVG)
  figure_pool       figures written by worker processes on many-core hosts
  document          one report, two renderings (Markdown, self-contained HTML)
  rebuild           from files alone: rebuild a report, fit any pipeline's results, export
  tracking          the run mirrored into an MLflow store (optional extra)
  power             the plan's and the report's power statements (minimum detectable gain)
"""
