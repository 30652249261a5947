"""Labs: self-checking lessons (labs/NN-topic/lab.yaml) run step by step against a real
knet cluster; see runner.py for the engine and model.py for the lab.yaml schema."""
