# Joins issue 17's migration (0005_flow_control, on 0004) with main's 0007_trace_context (also on
# 0004), so the graph has one leaf again. The merger may replace it with the round's own merge.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tandem", "0005_flow_control"),
        ("tandem", "0007_trace_context"),
    ]

    operations = []
