"""The shared vocabulary every stage uses: tasks, labelled data, spans, answers and the task kinds.

Imports nothing else from workbench.
"""
