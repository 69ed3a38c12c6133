//! Settles the toolchain question: an embedded Aeron media driver starts in its own /dev/shm
//! directory and carries a message from a publication to a subscription over IPC.

use std::time::{Duration, Instant};

use rusteron_client::{Aeron, AeronContext, Handlers, IntoCString};
use sequencer::driver::{unique_dir, EmbeddedDriver};

const STREAM_ID: i32 = 1001;
const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn embedded_driver_passes_one_message_over_ipc() {
    let dir = unique_dir("smoke");
    let driver = EmbeddedDriver::launch(&dir).expect("driver starts");
    assert!(dir.join("cnc.dat").exists(), "driver writes its CnC file");

    {
        let context = AeronContext::new().unwrap();
        context
            .set_dir(&dir.to_string_lossy().to_string().into_c_string())
            .unwrap();
        let aeron = Aeron::new(&context).unwrap();
        aeron.start().unwrap();
        let channel = "aeron:ipc".into_c_string();
        let subscription = aeron
            .async_add_subscription(&channel, STREAM_ID, Handlers::NONE, Handlers::NONE)
            .unwrap()
            .poll_blocking(TIMEOUT)
            .unwrap();
        let publication = aeron
            .async_add_exclusive_publication(&channel, STREAM_ID)
            .unwrap()
            .poll_blocking(TIMEOUT)
            .unwrap();

        let message = b"exchange-core says hello";
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match publication.offer(message) {
                Ok(_) => break,
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("offer failed: {e:?}"),
            }
        }

        let mut received: Vec<Vec<u8>> = Vec::new();
        while received.is_empty() {
            assert!(Instant::now() < deadline, "no message within {TIMEOUT:?}");
            subscription
                .poll_fn(|buffer, _header| received.push(buffer.to_vec()), 10)
                .unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(received, vec![message.to_vec()]);
    }

    drop(driver);
    assert!(!dir.exists(), "driver directory removed on shutdown");
}
