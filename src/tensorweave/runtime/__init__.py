"""Running graphs: Session, plan compilation and execution."""
