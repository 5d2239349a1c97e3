//! Test helper: writes notes through the client SDK forever, printing
//! `saved N` after each one is reported saved. The crash test kills it with
//! SIGKILL and checks that every note it printed survived.

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: writer DATA_DIR CASE_ID"));
    let case: aftercase_sync::CaseId = args.next().expect("case id").parse()?;
    let device = aftercase_client::Device::open(&dir)?;
    for n in 0.. {
        device.add_note(case, &format!("crash-note-{n}"))?;
        println!("saved {n}");
    }
    Ok(())
}
