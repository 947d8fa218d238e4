"""What tests feed the code under test (the harness, tests/harness, is what they start):

- core_bundle: copies of the reference CORE eval bundle (shared data), with stand-ins for its missing tasks
- synthetic: a sweep's store written from a known scaling law, for the report
- tiny_training: a tiny real corpus and BPE, and the trainer's command line for a depth-1 run
- fake_trainer, fake_tokenizer: stand-in programs that honour the trainer's and the tokenizer job's
  contract (progress, checkpoints, resume, results), run where the real ones would be too slow
- fit_reference: the Chinchilla fit as it was before it was made fast, the reference the fast one is checked against
- dashboards: dashboards/generate.py imported as a module
"""
